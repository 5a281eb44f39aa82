//! In-memory adapters for the embedded development mode and for tests: a
//! `FactorStore` that keeps everything in this process (and loses it on exit).
//! The production clock is `adapters-clock`.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use application::{
    ApplicationError, ChangeContext, Committed, Current, Decide, FactorStore, FactorWrite,
    NotReady, Readiness, RecoveryWrite, Reseal, SecretStore, StoreError, StoredSecret,
};
use domain::{
    Attempts, EventKind, FactorEvent, FactorState, OrgId, OtpFactor, RecoveryCodes, UserId,
};

/// An appended event as the memory store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    /// The event.
    pub event: FactorEvent,
    /// Who acted.
    pub actor: UserId,
    /// The organisation the change was made in, when known.
    pub resource_owner: Option<OrgId>,
}

#[derive(Debug, Default)]
struct Stream {
    factor: Option<OtpFactor>,
    attempts: Attempts,
    recovery: Option<RecoveryCodes>,
    events: Vec<RecordedEvent>,
}

/// Factors and event streams in a mutex-guarded map. The mutex is this
/// process's stand-in for the database's row lock: it is only ever used by
/// one process, so it settles concurrency as completely as PostgreSQL does
/// for the real store.
#[derive(Debug, Default)]
pub struct MemoryFactorStore {
    streams: Mutex<HashMap<UserId, Stream>>,
}

impl MemoryFactorStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The user's event stream, oldest first.
    #[must_use]
    pub fn events(&self, user: &UserId) -> Vec<RecordedEvent> {
        let streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        streams
            .get(user)
            .map(|s| s.events.clone())
            .unwrap_or_default()
    }
}

#[async_trait]
impl FactorStore for MemoryFactorStore {
    async fn find(&self, user: &UserId) -> Result<Option<OtpFactor>, StoreError> {
        let streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(streams.get(user).and_then(|s| s.factor.clone()))
    }

    async fn recovery_codes(&self, user: &UserId) -> Result<Option<RecoveryCodes>, StoreError> {
        let streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(streams.get(user).and_then(|s| s.recovery.clone()))
    }

    async fn resource_owner(&self, user: &UserId) -> Result<Option<OrgId>, StoreError> {
        let streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(streams.get(user).and_then(|s| {
            s.events
                .iter()
                .rev()
                .find_map(|recorded| recorded.resource_owner.clone())
        }))
    }

    async fn change(
        &self,
        user: &UserId,
        context: ChangeContext,
        decide: Decide,
    ) -> Result<Committed, ApplicationError> {
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        let stream = streams.entry(user.clone()).or_default();
        let change = decide(Current {
            factor: stream.factor.as_ref(),
            attempts: stream.attempts,
            recovery: stream.recovery.as_ref(),
        })?;
        match change.recovery {
            RecoveryWrite::Keep => {}
            RecoveryWrite::Put(codes) => stream.recovery = Some(codes),
            RecoveryWrite::Delete => stream.recovery = None,
        }
        match change.factor {
            FactorWrite::Keep => {}
            FactorWrite::Put(factor) => stream.factor = Some(factor),
            FactorWrite::Delete => stream.factor = None,
        }
        if let Some(attempts) = change.attempts {
            stream.attempts = attempts;
        }
        let mut events = Vec::with_capacity(change.events.len());
        for kind in change.events {
            let sequence = stream.events.last().map_or(0, |e| e.event.sequence) + 1;
            let event = FactorEvent {
                kind,
                sequence,
                at: context.at,
            };
            stream.events.push(RecordedEvent {
                event,
                actor: context.actor.clone(),
                resource_owner: context.resource_owner.clone(),
            });
            events.push(event);
        }
        Ok(Committed {
            events,
            refusal: change.refusal,
        })
    }

    async fn purge_pending(&self, added_before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        let mut purged = 0;
        for stream in streams.values_mut() {
            if stream.factor.as_ref().is_some_and(|factor| {
                factor.state() == FactorState::NotReady && factor.created_at() < added_before
            }) {
                stream.factor = None;
                purged += 1;
            }
        }
        Ok(purged)
    }
}

#[async_trait]
impl SecretStore for MemoryFactorStore {
    async fn stored_secrets(
        &self,
        after: Option<&UserId>,
        limit: usize,
    ) -> Result<Vec<StoredSecret>, StoreError> {
        let streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        let mut found: Vec<StoredSecret> = streams
            .iter()
            .filter(|(user, _)| after.is_none_or(|after| *user > after))
            .filter_map(|(user, stream)| {
                let factor = stream.factor.as_ref()?;
                Some(StoredSecret {
                    user: user.clone(),
                    sealed: factor.secret().clone(),
                    params: factor.params(),
                    created_at: factor.created_at(),
                })
            })
            .collect();
        found.sort_by(|a, b| a.user.cmp(&b.user));
        found.truncate(limit);
        Ok(found)
    }

    async fn reseal(&self, batch: Vec<Reseal>) -> Result<u64, StoreError> {
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        let mut written = 0;
        for reseal in batch {
            let factor = streams
                .get_mut(&reseal.user)
                .and_then(|stream| stream.factor.as_mut());
            if let Some(factor) = factor.filter(|factor| *factor.secret() == reseal.old) {
                *factor = factor.resealed(reseal.new);
                written += 1;
            }
        }
        Ok(written)
    }
}

#[async_trait]
impl Readiness for MemoryFactorStore {
    async fn ready(&self) -> Result<(), NotReady> {
        Ok(())
    }
}

/// Names of the kinds in a stream, for assertions.
#[must_use]
pub fn kinds(events: &[RecordedEvent]) -> Vec<EventKind> {
    events.iter().map(|e| e.event.kind).collect()
}
