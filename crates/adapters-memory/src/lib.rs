//! In-memory adapters for the embedded development mode and for tests: a
//! `FactorStore` that keeps everything in this process (and loses it on exit),
//! and the system clock.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use application::{
    ApplicationError, ChangeContext, Clock, Decide, FactorStore, Readiness, StoreError,
};
use domain::{EventKind, FactorEvent, OtpFactor, UserId};

/// An appended event as the memory store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    /// The event.
    pub event: FactorEvent,
    /// Who acted.
    pub actor: UserId,
}

#[derive(Debug, Default)]
struct Stream {
    factor: Option<OtpFactor>,
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

    async fn change(
        &self,
        user: &UserId,
        context: ChangeContext,
        decide: Decide,
    ) -> Result<FactorEvent, ApplicationError> {
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        let stream = streams.entry(user.clone()).or_default();
        let change = decide(stream.factor.as_ref())?;
        let sequence = stream.events.last().map_or(0, |e| e.event.sequence) + 1;
        let event = FactorEvent {
            kind: change.event,
            sequence,
            at: context.at,
        };
        stream.factor = change.factor;
        stream.events.push(RecordedEvent {
            event,
            actor: context.actor,
        });
        Ok(event)
    }
}

#[async_trait]
impl Readiness for MemoryFactorStore {
    async fn ready(&self) -> Result<(), String> {
        Ok(())
    }
}

/// The operating system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods, reason = "this is the clock adapter")]
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Names of the kinds in a stream, for assertions.
#[must_use]
pub fn kinds(events: &[RecordedEvent]) -> Vec<EventKind> {
    events.iter().map(|e| e.event.kind).collect()
}
