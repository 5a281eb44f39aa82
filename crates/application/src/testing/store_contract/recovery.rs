//! Store contract properties of recovery codes: they are part of the user's
//! state that one change reads and writes, so a redemption is exact under
//! concurrency like every other change.

use std::sync::Arc;

use chrono::Duration;

use domain::{EventKind, FactorError, RecoveryCodes, RecoveryHash};

use super::{context, last_sequence, t0};
use crate::error::ApplicationError;
use crate::ports::{Change, Current, FactorStore, FactorWrite, RecoveryWrite};
use crate::testing::unique_user;

fn set(key_id: &str, tags: &[u8]) -> RecoveryCodes {
    RecoveryCodes {
        key_id: key_id.to_owned(),
        hashes: tags.iter().map(|tag| RecoveryHash([*tag; 32])).collect(),
    }
}

fn write(recovery: RecoveryWrite, event: EventKind) -> Change {
    Change {
        factor: FactorWrite::Keep,
        attempts: None,
        recovery,
        events: vec![event],
        refusal: None,
    }
}

/// The decision of a redemption of the code hashed `[tag; 32]`.
fn redeem(tag: u8) -> crate::ports::Decide {
    Box::new(move |current: Current<'_>| {
        let codes = current.recovery.ok_or(ApplicationError::NoRecoveryCodes)?;
        let Some(index) = codes.hashes.iter().position(|h| h.0 == [tag; 32]) else {
            return Ok(Change {
                factor: FactorWrite::Keep,
                attempts: None,
                recovery: RecoveryWrite::Keep,
                events: vec![EventKind::RecoveryCodeFailed],
                refusal: Some(FactorError::InvalidCode.into()),
            });
        };
        Ok(write(
            codes
                .without(index)
                .map_or(RecoveryWrite::Delete, RecoveryWrite::Put),
            EventKind::RecoveryCodeRedeemed,
        ))
    })
}

/// Recovery codes read back as written (key id and every hash, in order),
/// through [`FactorStore::recovery_codes`] and the next decision's
/// [`Current`]; a change that keeps them (a wrong-code count, a factor
/// write) leaves them as they were; Put replaces, Delete removes.
///
/// # Panics
/// When the store breaks the property.
pub async fn recovery_codes_round_trip(store: Arc<dyn FactorStore>) {
    let user = unique_user("contract-recovery");
    let s = store.as_ref();
    assert_eq!(s.recovery_codes(&user).await.ok().flatten(), None);
    let first = set("key-a", &[1, 2, 3]);
    let put = first.clone();
    let decide = Box::new(move |current: Current<'_>| {
        assert!(current.recovery.is_none(), "a new user has no codes");
        Ok(write(
            RecoveryWrite::Put(put.clone()),
            EventKind::RecoveryCodesGenerated,
        ))
    });
    assert_eq!(
        last_sequence(s.change(&user, context(&user, t0()), decide).await),
        Ok(1)
    );
    assert_eq!(
        s.recovery_codes(&user).await.ok().flatten(),
        Some(first.clone())
    );

    // Kept by a change that writes only the count and by a factor write.
    let at = t0() + Duration::seconds(1);
    let seen = first.clone();
    let decide = Box::new(move |current: Current<'_>| {
        if current.recovery != Some(&seen) {
            return Err(ApplicationError::InvalidRequest("codes not read".into()));
        }
        Ok(Change {
            factor: FactorWrite::Keep,
            attempts: Some(current.attempts.failed(at)),
            recovery: RecoveryWrite::Keep,
            events: vec![EventKind::RecoveryCodeFailed],
            refusal: None,
        })
    });
    assert_eq!(
        last_sequence(s.change(&user, context(&user, at), decide).await),
        Ok(2)
    );
    let decide =
        Box::new(|_: Current<'_>| Ok(Change::accepted(FactorWrite::Delete, EventKind::OtpRemoved)));
    assert_eq!(
        last_sequence(s.change(&user, context(&user, at), decide).await),
        Ok(3)
    );
    assert_eq!(s.recovery_codes(&user).await.ok().flatten(), Some(first));

    // Redeeming the middle one keeps the others in order; the last goes whole.
    assert_eq!(
        last_sequence(s.change(&user, context(&user, at), redeem(2)).await),
        Ok(4)
    );
    assert_eq!(
        s.recovery_codes(&user).await.ok().flatten(),
        Some(set("key-a", &[1, 3]))
    );
    let replaced = set("key-b", &[9]);
    let put = replaced.clone();
    let decide = Box::new(move |_: Current<'_>| {
        Ok(write(
            RecoveryWrite::Put(put.clone()),
            EventKind::RecoveryCodesGenerated,
        ))
    });
    assert_eq!(
        last_sequence(s.change(&user, context(&user, at), decide).await),
        Ok(5)
    );
    assert_eq!(s.recovery_codes(&user).await.ok().flatten(), Some(replaced));
    assert_eq!(
        last_sequence(s.change(&user, context(&user, at), redeem(9)).await),
        Ok(6)
    );
    assert_eq!(s.recovery_codes(&user).await.ok().flatten(), None);
    assert_eq!(
        last_sequence(s.change(&user, context(&user, at), redeem(9)).await),
        Err(ApplicationError::NoRecoveryCodes)
    );
    let decide = Box::new(|current: Current<'_>| {
        if current.recovery.is_some() {
            return Err(ApplicationError::InvalidRequest(
                "deleted codes came back".into(),
            ));
        }
        Ok(write(
            RecoveryWrite::Delete,
            EventKind::RecoveryCodesRemoved,
        ))
    });
    assert_eq!(
        last_sequence(s.change(&user, context(&user, at), decide).await),
        Ok(7)
    );
}

/// Of many concurrent redemptions of one code, exactly one commits; the
/// others see it gone (and commit only their refusal), and the other codes
/// stay.
///
/// # Panics
/// When the store breaks the property.
pub async fn concurrent_redemptions_succeed_once(store: Arc<dyn FactorStore>) {
    let user = unique_user("contract-redeem");
    let put = set("key-a", &[1, 2, 3]);
    let decide = Box::new(move |_: Current<'_>| {
        Ok(write(
            RecoveryWrite::Put(put.clone()),
            EventKind::RecoveryCodesGenerated,
        ))
    });
    assert_eq!(
        last_sequence(store.change(&user, context(&user, t0()), decide).await),
        Ok(1)
    );
    let tasks = (0..16).map(|_| {
        let store = store.clone();
        let user = user.clone();
        tokio::spawn(async move {
            last_sequence(store.change(&user, context(&user, t0()), redeem(2)).await)
        })
    });
    let outcomes: Vec<_> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|joined| joined.unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let redeemed = outcomes.iter().filter(|outcome| outcome.is_ok()).count();
    assert_eq!(redeemed, 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .filter_map(|outcome| outcome.as_ref().err())
            .all(|error| *error == ApplicationError::Factor(FactorError::InvalidCode)),
        "{outcomes:?}"
    );
    assert_eq!(
        store.recovery_codes(&user).await.ok().flatten(),
        Some(set("key-a", &[1, 3]))
    );
}
