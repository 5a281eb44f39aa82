//! The behaviour every [`FactorStore`] adapter must show. Each function is
//! one property; an adapter's test file gets one `#[tokio::test]` per
//! property from [`store_contract_tests!`](crate::store_contract_tests), so
//! a failure names the property it broke and hides none of the others.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};

use domain::{
    Attempts, EventKind, FactorError, FactorState, OrgId, OtpFactor, SealedSecret, TimeStep,
    TotpAlgorithm, TotpParams, UserId,
};

use super::unique_user;

mod recovery;
use crate::error::ApplicationError;
use crate::ports::{
    Change, ChangeContext, Committed, Current, FactorStore, FactorWrite, RecoveryWrite, Reseal,
    SecretStore,
};
pub use recovery::{concurrent_redemptions_succeed_once, recovery_codes_round_trip};

/// The sequence of the last event a successful change appended.
fn last_sequence(committed: Result<Committed, ApplicationError>) -> Result<u64, ApplicationError> {
    let committed = committed?;
    if let Some(refusal) = committed.refusal {
        return Err(refusal);
    }
    Ok(committed.events.last().map_or(0, |event| event.sequence))
}

fn t0() -> DateTime<Utc> {
    // Microsecond precision: what every store keeps.
    Utc.timestamp_opt(1_700_000_000, 123_456_000)
        .single()
        .unwrap_or_else(|| panic!("a fixed instant"))
}

/// Valid parameters, or a loud failure: a fixture must never fall back to
/// the defaults, or a round trip would compare defaults with defaults.
fn params(algorithm: TotpAlgorithm, digits: u8, period: u32, skew: u8) -> TotpParams {
    TotpParams::new(algorithm, digits, period, skew).unwrap_or_else(|e| panic!("fixture: {e}"))
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
    let params = params(TotpAlgorithm::Sha256, 8, 60, 2);
    let decide = Box::new(move |current: Current<'_>| {
        Ok(Change::accepted(
            FactorWrite::Put(OtpFactor::add(current.factor, sealed(tag), params, at)?),
            EventKind::OtpAdded,
        ))
    });
    last_sequence(store.change(user, context(user, at), decide).await)
}

async fn verify(
    store: &dyn FactorStore,
    user: &UserId,
    at: DateTime<Utc>,
) -> Result<u64, ApplicationError> {
    let decide = Box::new(move |current: Current<'_>| {
        let pending = OtpFactor::pending_for_verify(current.factor)?;
        Ok(Change::accepted(
            FactorWrite::Put(pending.verified(at)),
            EventKind::OtpVerified,
        ))
    });
    last_sequence(store.change(user, context(user, at), decide).await)
}

async fn remove(
    store: &dyn FactorStore,
    user: &UserId,
    at: DateTime<Utc>,
) -> Result<u64, ApplicationError> {
    let decide = Box::new(|current: Current<'_>| {
        OtpFactor::remove(current.factor)?;
        Ok(Change::accepted(FactorWrite::Delete, EventKind::OtpRemoved))
    });
    last_sequence(store.change(user, context(user, at), decide).await)
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
    let decide = Box::new(move |current: Current<'_>| {
        let params = params(TotpAlgorithm::Sha512, 8, 45, 0);
        let factor = OtpFactor::add(current.factor, sealed(7), params, at)?;
        Ok(Change::accepted(
            FactorWrite::Put(factor.used(TimeStep(u64::MAX >> 2))),
            EventKind::OtpAdded,
        ))
    });
    let committed = store
        .change(&user, context(&user, at), decide)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(committed.refusal.is_none());
    let event = committed.events[0];
    assert_eq!(
        (event.kind, event.sequence, event.at),
        (EventKind::OtpAdded, 1, at)
    );

    let stored = store
        .find(&user)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("factor missing"));
    assert_eq!(stored.state(), FactorState::NotReady);
    assert_eq!(stored.secret(), &sealed(7));
    assert_eq!(stored.params(), params(TotpAlgorithm::Sha512, 8, 45, 0));
    assert_eq!((stored.created_at(), stored.changed_at()), (at, at));
    assert_eq!(stored.last_used_step(), Some(TimeStep(u64::MAX >> 2)));
}

/// A decision may commit writes and still refuse the call: the wrong-code
/// count is stored per user (it outlives the factor), and every event gets
/// its own sequence number in order.
///
/// # Panics
/// When the store breaks the property.
pub async fn refusals_commit_attempts_and_events(store: Arc<dyn FactorStore>) {
    let user = unique_user("contract-attempts");
    let s = store.as_ref();
    assert_eq!(add(s, &user, 1, t0()).await, Ok(1));
    let failed_at = t0() + Duration::seconds(3);
    let seen = Arc::new(std::sync::Mutex::new(None));
    let record = seen.clone();
    let decide = Box::new(move |current: Current<'_>| {
        *record
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(current.attempts);
        Ok(Change {
            factor: FactorWrite::Keep,
            attempts: Some(current.attempts.failed(failed_at).failed(failed_at)),
            recovery: RecoveryWrite::Keep,
            events: vec![EventKind::CheckFailed, EventKind::Locked],
            refusal: Some(FactorError::InvalidCode.into()),
        })
    });
    let committed = s
        .change(&user, context(&user, failed_at), decide)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        seen.lock().ok().and_then(|g| *g),
        Some(Attempts::default()),
        "a new user has no wrong codes"
    );
    assert_eq!(committed.refusal, Some(FactorError::InvalidCode.into()));
    let events: Vec<_> = committed
        .events
        .iter()
        .map(|e| (e.kind, e.sequence, e.at))
        .collect();
    assert_eq!(
        events,
        vec![
            (EventKind::CheckFailed, 2, failed_at),
            (EventKind::Locked, 3, failed_at)
        ]
    );
    // The factor was kept; the count outlives its removal.
    assert_eq!(
        s.find(&user).await.ok().flatten().map(|f| f.state()),
        Some(FactorState::NotReady)
    );
    assert_eq!(remove(s, &user, t0()).await, Ok(4));
    let decide = Box::new(|current: Current<'_>| {
        Err(ApplicationError::InvalidRequest(
            format!("failures={}", current.attempts.failures).into(),
        ))
    });
    let answer = s.change(&user, context(&user, t0()), decide).await;
    assert_eq!(
        answer.err(),
        Some(ApplicationError::InvalidRequest("failures=2".into()))
    );
    let decide = Box::new(move |current: Current<'_>| {
        if current.attempts.last_failure_at != Some(failed_at) {
            return Err(ApplicationError::InvalidRequest(
                "the count was lost".into(),
            ));
        }
        Ok(Change {
            factor: FactorWrite::Keep,
            attempts: Some(Attempts::default()),
            recovery: RecoveryWrite::Keep,
            events: vec![EventKind::CheckSucceeded],
            refusal: None,
        })
    });
    assert_eq!(
        last_sequence(s.change(&user, context(&user, t0()), decide).await),
        Ok(5)
    );
}

/// Purging deletes pending factors added before the cut-off and nothing
/// else; the users' streams go on.
///
/// # Panics
/// When the store breaks the property.
pub async fn purge_removes_only_stale_pending_factors(store: Arc<dyn FactorStore>) {
    let s = store.as_ref();
    // Far in the past, so factors other tests leave behind are newer.
    let old = Utc
        .timestamp_opt(1_000_000_000, 0)
        .single()
        .unwrap_or_else(|| panic!("a fixed instant"));
    let (stale, fresh, ready) = (
        unique_user("contract-purge-stale"),
        unique_user("contract-purge-fresh"),
        unique_user("contract-purge-ready"),
    );
    assert_eq!(add(s, &stale, 1, old).await, Ok(1));
    assert_eq!(add(s, &fresh, 2, old + Duration::seconds(60)).await, Ok(1));
    assert_eq!(add(s, &ready, 3, old).await, Ok(1));
    assert_eq!(verify(s, &ready, old).await, Ok(2));
    let purged = s
        .purge_pending(old + Duration::seconds(30))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(purged >= 1, "purged {purged}");
    assert_eq!(s.find(&stale).await, Ok(None));
    assert!(s.find(&fresh).await.ok().flatten().is_some());
    assert!(s.find(&ready).await.ok().flatten().is_some());
    assert_eq!(add(s, &stale, 4, t0()).await, Ok(2));
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
    let ready_later = s
        .find(&alice)
        .await
        .ok()
        .flatten()
        .map(|f| f.secret().clone());
    assert_eq!(ready_later, Some(sealed(4)));
}

/// The resource owner is the newest one the user's events named, and
/// outlives the factor; an unknown user's is `None`.
///
/// # Panics
/// When the store breaks the property.
pub async fn resource_owner_is_the_newest_named(store: Arc<dyn FactorStore>) {
    let user = unique_user("contract-owner");
    let s = store.as_ref();
    assert_eq!(s.resource_owner(&user).await, Ok(None));
    assert_eq!(add(s, &user, 1, t0()).await, Ok(1));
    assert_eq!(
        s.resource_owner(&user)
            .await
            .ok()
            .flatten()
            .map(|org| org.as_str().to_owned()),
        Some("org-1".to_owned())
    );
    // A change whose context names no organisation (a trusted caller's
    // check) keeps the owner; one naming another moves it.
    let unnamed = ChangeContext {
        at: t0(),
        actor: user.clone(),
        resource_owner: None,
    };
    let decide = Box::new(|current: Current<'_>| {
        OtpFactor::remove(current.factor)?;
        Ok(Change::accepted(FactorWrite::Delete, EventKind::OtpRemoved))
    });
    assert_eq!(last_sequence(s.change(&user, unnamed, decide).await), Ok(2));
    assert_eq!(s.find(&user).await, Ok(None));
    assert_eq!(
        s.resource_owner(&user)
            .await
            .ok()
            .flatten()
            .map(|org| org.as_str().to_owned()),
        Some("org-1".to_owned()),
        "the owner outlives the factor, and an unnamed event keeps it"
    );
    let elsewhere = ChangeContext {
        at: t0(),
        actor: user.clone(),
        resource_owner: OrgId::parse("org-2").ok(),
    };
    let params = TotpParams::default();
    let decide = Box::new(move |current: Current<'_>| {
        Ok(Change::accepted(
            FactorWrite::Put(OtpFactor::add(current.factor, sealed(2), params, t0())?),
            EventKind::OtpAdded,
        ))
    });
    assert_eq!(
        last_sequence(s.change(&user, elsewhere, decide).await),
        Ok(3)
    );
    assert_eq!(
        s.resource_owner(&user)
            .await
            .ok()
            .flatten()
            .map(|org| org.as_str().to_owned()),
        Some("org-2".to_owned())
    );
    let other = unique_user("contract-owner-other");
    assert_eq!(s.resource_owner(&other).await, Ok(None), "per user");
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
        stored.map(|f| (f.state(), f.secret().clone())),
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
    let stored = store
        .find(&user)
        .await
        .ok()
        .flatten()
        .map(|f| f.secret().clone());
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

/// One `#[tokio::test]` per property of the store contract. `$store` is an
/// expression, evaluated inside each test (it may `.await`), that answers
/// `Option<(guard, Arc<Store>)>`: the guard lives as long as the test (a
/// throwaway database, say), and `None` skips the test (no database here).
/// The store must implement both `FactorStore` and `SecretStore`.
///
/// ```ignore
/// application::store_contract_tests!(Some(((), Arc::new(MemoryFactorStore::new()))));
/// ```
#[macro_export]
macro_rules! store_contract_tests {
    ($store:expr) => {
        $crate::store_contract_tests!(@each $store;
            unknown_user_has_no_factor,
            factor_round_trips_with_its_event,
            sequences_count_per_user_without_gaps,
            refused_decision_writes_nothing,
            concurrent_changes_are_serialised,
            concurrent_verifies_succeed_once,
            refusals_commit_attempts_and_events,
            resource_owner_is_the_newest_named,
            purge_removes_only_stale_pending_factors,
            secrets_page_and_reseal,
            recovery_codes_round_trip,
            concurrent_redemptions_succeed_once
        );
    };
    (@each $store:expr; $($property:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $property() {
                let Some((_guard, store)) = $store else {
                    return;
                };
                $crate::testing::store_contract::$property(store).await;
            }
        )*
    };
}

/// Distinct parameters per factor, so a store returning the wrong ones shows.
fn rotation_params(tag: u8) -> TotpParams {
    if tag.is_multiple_of(2) {
        TotpParams::default()
    } else {
        params(TotpAlgorithm::Sha256, 8, 60, 2)
    }
}

/// Key rotation's view of the store: every secret with the parameters and
/// creation time it is bound to, page by page in user id order, and
/// compare-and-swap re-sealing.
///
/// # Panics
/// When the store breaks the property.
pub async fn secrets_page_and_reseal<S>(store: Arc<S>)
where
    S: FactorStore + SecretStore + 'static,
{
    // Key ids unique to this run, so other tests' factors do not interfere.
    let run = unique_user("rot");
    let old_key = format!("old-{run}");
    let new_key = format!("new-{run}");
    let sealed_with = |key: &str, tag: u8| SealedSecret {
        key_id: key.to_owned(),
        sealed: vec![tag; 40],
    };
    let mut users = Vec::new();
    for tag in 0..5_u8 {
        let user = unique_user(&format!("contract-rotate-{tag}"));
        let secret = sealed_with(&old_key, tag);
        let params = rotation_params(tag);
        let decide = Box::new(move |current: Current<'_>| {
            let factor = OtpFactor::add(current.factor, secret.clone(), params, t0())?;
            Ok(Change::accepted(
                FactorWrite::Put(factor),
                EventKind::OtpAdded,
            ))
        });
        assert_eq!(
            last_sequence(store.change(&user, context(&user, t0()), decide).await),
            Ok(1)
        );
        users.push(user);
    }
    users.sort();

    // Page through every secret, keeping only this run's.
    let mut after: Option<UserId> = None;
    let mut mine = Vec::new();
    loop {
        let page = store
            .stored_secrets(after.as_ref(), 2)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some(last.user.clone());
        mine.extend(page.into_iter().filter(|s| s.sealed.key_id == old_key));
    }
    let found: Vec<_> = mine.iter().map(|s| s.user.clone()).collect();
    assert_eq!(found, users, "every secret once, in user id order");
    for stored in &mine {
        let tag = stored.sealed.sealed[0];
        assert_eq!(stored.params, rotation_params(tag), "params of {tag}");
        assert_eq!(stored.created_at, t0(), "creation time of {tag}");
    }

    // The first user's secret changes meanwhile: its re-seal must not land.
    let changed = users[0].clone();
    let replacement = sealed_with(&old_key, 99);
    let decide = Box::new(move |current: Current<'_>| {
        let factor = OtpFactor::add(
            current.factor,
            replacement.clone(),
            TotpParams::default(),
            t0(),
        )?;
        Ok(Change::accepted(
            FactorWrite::Put(factor),
            EventKind::OtpAdded,
        ))
    });
    assert_eq!(
        last_sequence(
            store
                .change(&changed, context(&changed, t0()), decide)
                .await
        ),
        Ok(2)
    );

    let batch = mine
        .iter()
        .map(|stored| Reseal {
            user: stored.user.clone(),
            old: stored.sealed.clone(),
            new: sealed_with(&new_key, stored.sealed.sealed[0].wrapping_add(100)),
        })
        .collect();
    assert_eq!(store.reseal(batch).await, Ok(4));
    for (i, user) in users.iter().enumerate() {
        let stored = store
            .find(user)
            .await
            .ok()
            .flatten()
            .map(|f| f.secret().clone());
        let expected = if i == 0 {
            sealed_with(&old_key, 99)
        } else {
            sealed_with(&new_key, u8::try_from(i).unwrap_or(0).wrapping_add(100))
        };
        assert_eq!(stored, Some(expected), "user {i}");
    }
    assert_eq!(store.reseal(Vec::new()).await, Ok(0));
}
