//! The behaviour every [`FactorStore`] adapter must show. Each function is
//! one property; adapters call them all from their own tests (see
//! [`run_all`]).

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};

use domain::{
    EventKind, FactorError, FactorState, OrgId, OtpFactor, SealedSecret, TotpAlgorithm, TotpParams,
    UserId,
};

use super::unique_user;
use crate::error::ApplicationError;
use crate::ports::{Change, ChangeContext, FactorStore};

fn t0() -> DateTime<Utc> {
    // Microsecond precision: what every store keeps.
    Utc.timestamp_opt(1_700_000_000, 123_456_000)
        .single()
        .unwrap_or_default()
}

fn context(user: &UserId, at: DateTime<Utc>) -> ChangeContext {
    ChangeContext {
        at,
        actor: user.clone(),
        resource_owner: OrgId::parse("org-1").ok(),
    }
}

fn sealed(tag: u8) -> SealedSecret {
    SealedSecret {
        key_id: format!("key-{tag}"),
        sealed: vec![tag; 48],
    }
}

async fn add(
    store: &dyn FactorStore,
    user: &UserId,
    tag: u8,
    at: DateTime<Utc>,
) -> Result<u64, ApplicationError> {
    let params = TotpParams::new(TotpAlgorithm::Sha256, 8, 60, 2).unwrap_or_default();
    let decide = Box::new(move |current: Option<&OtpFactor>| {
        Ok(Change {
            factor: Some(OtpFactor::add(current, sealed(tag), params, at)?),
            event: EventKind::OtpAdded,
        })
    });
    Ok(store
        .change(user, context(user, at), decide)
        .await?
        .sequence)
}

async fn verify(
    store: &dyn FactorStore,
    user: &UserId,
    at: DateTime<Utc>,
) -> Result<u64, ApplicationError> {
    let decide = Box::new(move |current: Option<&OtpFactor>| {
        let pending = OtpFactor::pending_for_verify(current)?;
        Ok(Change {
            factor: Some(pending.verified(at)),
            event: EventKind::OtpVerified,
        })
    });
    Ok(store
        .change(user, context(user, at), decide)
        .await?
        .sequence)
}

async fn remove(
    store: &dyn FactorStore,
    user: &UserId,
    at: DateTime<Utc>,
) -> Result<u64, ApplicationError> {
    let decide = Box::new(|current: Option<&OtpFactor>| {
        OtpFactor::remove(current)?;
        Ok(Change {
            factor: None,
            event: EventKind::OtpRemoved,
        })
    });
    Ok(store
        .change(user, context(user, at), decide)
        .await?
        .sequence)
}

/// An unknown user has no factor.
///
/// # Panics
/// When the store breaks the property.
pub async fn unknown_user_has_no_factor(store: Arc<dyn FactorStore>) {
    let user = unique_user("contract-none");
    assert_eq!(
        store.find(&user).await.unwrap_or_else(|e| panic!("{e}")),
        None
    );
}

/// A written factor reads back field for field, and the event carries the
/// kind, the next sequence and the change's time.
///
/// # Panics
/// When the store breaks the property.
pub async fn factor_round_trips_with_its_event(store: Arc<dyn FactorStore>) {
    let user = unique_user("contract-roundtrip");
    let at = t0();
    let decide = Box::new(move |current: Option<&OtpFactor>| {
        let params = TotpParams::new(TotpAlgorithm::Sha512, 8, 45, 0).unwrap_or_default();
        Ok(Change {
            factor: Some(OtpFactor::add(current, sealed(7), params, at)?),
            event: EventKind::OtpAdded,
        })
    });
    let event = store
        .change(&user, context(&user, at), decide)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (event.kind, event.sequence, event.at),
        (EventKind::OtpAdded, 1, at)
    );

    let stored = store
        .find(&user)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("factor missing"));
    assert_eq!(stored.state, FactorState::NotReady);
    assert_eq!(stored.secret, sealed(7));
    assert_eq!(
        stored.params,
        TotpParams::new(TotpAlgorithm::Sha512, 8, 45, 0).unwrap_or_default()
    );
    assert_eq!((stored.created_at, stored.changed_at), (at, at));
}

/// Sequences count 1, 2, 3, ... per user across add, verify, remove and add
/// again; other users' streams do not interfere.
///
/// # Panics
/// When the store breaks the property.
pub async fn sequences_count_per_user_without_gaps(store: Arc<dyn FactorStore>) {
    let (alice, bob) = (unique_user("contract-alice"), unique_user("contract-bob"));
    let s = store.as_ref();
    assert_eq!(add(s, &alice, 1, t0()).await, Ok(1));
    assert_eq!(add(s, &bob, 2, t0()).await, Ok(1));
    assert_eq!(add(s, &alice, 3, t0()).await, Ok(2));
    assert_eq!(verify(s, &alice, t0() + Duration::seconds(1)).await, Ok(3));
    assert_eq!(remove(s, &alice, t0() + Duration::seconds(2)).await, Ok(4));
    assert_eq!(s.find(&alice).await, Ok(None));
    assert_eq!(add(s, &alice, 4, t0()).await, Ok(5));
    assert_eq!(remove(s, &bob, t0()).await, Ok(2));
    let ready_later = s.find(&alice).await.ok().flatten().map(|f| f.secret);
    assert_eq!(ready_later, Some(sealed(4)));
}

/// A refused decision writes nothing and uses no sequence number.
///
/// # Panics
/// When the store breaks the property.
pub async fn refused_decision_writes_nothing(store: Arc<dyn FactorStore>) {
    let user = unique_user("contract-refused");
    let s = store.as_ref();
    assert_eq!(
        remove(s, &user, t0()).await,
        Err(FactorError::NothingToRemove.into())
    );
    assert_eq!(
        verify(s, &user, t0()).await,
        Err(FactorError::NothingToVerify.into())
    );
    assert_eq!(add(s, &user, 1, t0()).await, Ok(1));
    assert_eq!(verify(s, &user, t0()).await, Ok(2));
    assert_eq!(
        add(s, &user, 2, t0()).await,
        Err(FactorError::AlreadySetUp.into())
    );
    let stored = s.find(&user).await.ok().flatten();
    assert_eq!(
        stored.map(|f| (f.state, f.secret)),
        Some((FactorState::Ready, sealed(1)))
    );
    assert_eq!(remove(s, &user, t0()).await, Ok(3));
}

/// Many concurrent changes of one user are serialised: every sequence number
/// from 1 to N is used exactly once and the last one's factor is stored.
///
/// # Panics
/// When the store breaks the property.
pub async fn concurrent_changes_are_serialised(store: Arc<dyn FactorStore>) {
    const WRITERS: u8 = 32;
    let user = unique_user("contract-concurrent");
    let tasks = (1..=WRITERS).map(|tag| {
        let (store, user) = (store.clone(), user.clone());
        tokio::spawn(async move { (tag, add(store.as_ref(), &user, tag, t0()).await) })
    });
    let mut results = Vec::new();
    for task in futures::future::join_all(tasks).await {
        let (tag, sequence) = task.unwrap_or_else(|e| panic!("task failed: {e}"));
        results.push((sequence.unwrap_or_else(|e| panic!("add failed: {e}")), tag));
    }
    results.sort_unstable();
    let sequences: Vec<u64> = results.iter().map(|(s, _)| *s).collect();
    assert_eq!(sequences, (1..=u64::from(WRITERS)).collect::<Vec<_>>());
    let (_, last_tag) = results[results.len() - 1];
    let stored = store.find(&user).await.ok().flatten().map(|f| f.secret);
    assert_eq!(
        stored,
        Some(sealed(last_tag)),
        "the last committed change wins"
    );
}

/// Of many concurrent decisions that each require a pending factor and make
/// it READY, exactly one succeeds; the others see READY and are refused.
///
/// # Panics
/// When the store breaks the property.
pub async fn concurrent_verifies_succeed_once(store: Arc<dyn FactorStore>) {
    let user = unique_user("contract-verify-once");
    assert_eq!(add(store.as_ref(), &user, 1, t0()).await, Ok(1));
    let tasks = (0..16).map(|_| {
        let (store, user) = (store.clone(), user.clone());
        tokio::spawn(async move { verify(store.as_ref(), &user, t0()).await })
    });
    let outcomes: Vec<_> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(outcomes.len(), 16);
    assert_eq!(
        outcomes.iter().filter(|o| **o == Ok(2)).count(),
        1,
        "{outcomes:?}"
    );
    let refused = outcomes
        .iter()
        .filter(|o| **o == Err(FactorError::AlreadyVerified.into()))
        .count();
    assert_eq!(refused, 15, "{outcomes:?}");
}

/// Runs every property against `store`.
///
/// # Panics
/// When the store breaks a property.
pub async fn run_all(store: Arc<dyn FactorStore>) {
    unknown_user_has_no_factor(store.clone()).await;
    factor_round_trips_with_its_event(store.clone()).await;
    sequences_count_per_user_without_gaps(store.clone()).await;
    refused_decision_writes_nothing(store.clone()).await;
    concurrent_changes_are_serialised(store.clone()).await;
    concurrent_verifies_succeed_once(store).await;
}
