//! Recovery codes on the in-memory store: generate, redeem once, remove, the
//! shared lockout with OTP codes, and codes going with the factor.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers")]

use std::sync::Arc;

use adapters_crypto::AesGcmCipher;
use adapters_memory::{MemoryFactorStore, kinds};
use application::testing::{FixedClock, SeededSecrets, principal};
use application::{
    ApplicationError, CallerAllowlist, Clock, OtpFactors, Principal, RecoverySettings, TotpSettings,
};
use chrono::{DateTime, Duration, TimeZone, Utc};
use domain::{AttemptPolicy, EventKind, FactorError, TotpKey, TotpParams, TotpSecret, UserId};
use secrecy::{ExposeSecret, SecretString};

const KEYS: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

struct World {
    factors: OtpFactors,
    store: Arc<MemoryFactorStore>,
    clock: Arc<FixedClock>,
}

fn t0() -> DateTime<Utc> {
    Utc.timestamp_opt(1_742_554_287, 0).unwrap()
}

fn world() -> World {
    let store = Arc::new(MemoryFactorStore::new());
    let clock = FixedClock::at(t0());
    let cipher = Arc::new(AesGcmCipher::from_config(&SecretString::from(KEYS)).unwrap());
    let settings = TotpSettings {
        check_clients: CallerAllowlist::new(["login-service"]),
        attempts: AttemptPolicy::new(3, chrono::TimeDelta::minutes(5)).unwrap(),
        ..TotpSettings::default()
    };
    let factors = OtpFactors::new(
        store.clone(),
        cipher.clone(),
        Arc::new(SeededSecrets::default()),
        clock.clone(),
        settings,
    )
    .with_recovery_codes(cipher, RecoverySettings { max_codes: 5 });
    World {
        factors,
        store,
        clock,
    }
}

fn checker() -> Principal {
    let mut caller = principal("login-service-sa");
    caller.scopes = vec!["otp.check".into()];
    caller.client_id = Some("login-service".into());
    caller
}

/// `user` with a READY factor; answers its secret.
async fn ready(w: &World, user: &Principal) -> SecretString {
    let added = w.factors.add_otp(user).await.unwrap();
    let key = TotpKey::new(
        TotpSecret::from_base32(added.secret.expose_secret()).unwrap(),
        TotpParams::default(),
    );
    let code = key.code_at(w.clock.now().timestamp() as u64);
    w.factors
        .verify_otp(user, code.expose_secret())
        .await
        .unwrap();
    added.secret
}

fn id(user: &Principal) -> UserId {
    user.user_id.clone()
}

#[tokio::test]
async fn generate_needs_a_ready_factor_and_a_count_in_range() {
    let w = world();
    let user = principal("rc-gen");
    assert_eq!(
        w.factors
            .generate_recovery_codes(&user, "rc-gen", 3)
            .await
            .err(),
        Some(ApplicationError::RecoveryNeedsFactor)
    );
    w.factors.add_otp(&user).await.unwrap();
    assert_eq!(
        w.factors
            .generate_recovery_codes(&user, "rc-gen", 3)
            .await
            .err(),
        Some(ApplicationError::RecoveryNeedsFactor),
        "a pending factor is not enough"
    );
    w.factors.remove_otp(&user).await.unwrap();
    ready(&w, &user).await;
    for count in [0, 6] {
        assert!(matches!(
            w.factors
                .generate_recovery_codes(&user, "rc-gen", count)
                .await,
            Err(ApplicationError::InvalidRequest(_))
        ));
    }
    let generated = w
        .factors
        .generate_recovery_codes(&user, "rc-gen", 5)
        .await
        .unwrap();
    assert_eq!(generated.codes.len(), 5);
    let mut distinct: Vec<&str> = generated.codes.iter().map(|c| c.expose()).collect();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 5);
    assert!(!format!("{generated:?}").contains(generated.codes[0].expose()));
    let list = w
        .factors
        .list_factors_for(&user, "rc-gen", application::Callers::SelfOrAdmin)
        .await
        .unwrap();
    assert_eq!(list.recovery_codes, 5);
    // v1 ListMyAuthFactors stays as it was: only the OTP factor.
    assert_eq!(
        w.factors.list_factors(&user).await.unwrap(),
        vec![application::ListedFactor::Otp]
    );
}

#[tokio::test]
async fn each_code_works_once_and_generating_again_replaces_the_unused_ones() {
    let w = world();
    let user = principal("rc-once");
    ready(&w, &user).await;
    let first = w
        .factors
        .generate_recovery_codes(&user, "rc-once", 3)
        .await
        .unwrap();
    let checker = checker();
    // Sloppy spelling still matches.
    let typed = first.codes[1].expose().to_lowercase().replace('-', " ");
    let redeemed = w
        .factors
        .check_recovery_code(&checker, &id(&user), &typed)
        .await
        .unwrap();
    assert_eq!(redeemed.remaining, 2);
    assert_eq!(
        w.factors
            .check_recovery_code(&checker, &id(&user), first.codes[1].expose())
            .await
            .err(),
        Some(ApplicationError::Factor(FactorError::InvalidCode)),
        "a redeemed code never works again"
    );
    let second = w
        .factors
        .generate_recovery_codes(&user, "rc-once", 2)
        .await
        .unwrap();
    assert_eq!(
        w.factors
            .check_recovery_code(&checker, &id(&user), first.codes[0].expose())
            .await
            .err(),
        Some(ApplicationError::Factor(FactorError::InvalidCode)),
        "generating again replaced the unused codes"
    );
    for (left, code) in [(1, &second.codes[0]), (0, &second.codes[1])] {
        let redeemed = w
            .factors
            .check_recovery_code(&checker, &id(&user), code.expose())
            .await
            .unwrap();
        assert_eq!(redeemed.remaining, left);
    }
    assert_eq!(
        w.factors
            .check_recovery_code(&checker, &id(&user), second.codes[0].expose())
            .await
            .err(),
        Some(ApplicationError::NoRecoveryCodes)
    );
    let events = kinds(&w.store.events(&id(&user)));
    assert_eq!(
        events[2..],
        [
            EventKind::RecoveryCodesGenerated,
            EventKind::RecoveryCodeRedeemed,
            EventKind::RecoveryCodeFailed,
            EventKind::RecoveryCodesGenerated,
            EventKind::RecoveryCodeFailed,
            EventKind::RecoveryCodeRedeemed,
            EventKind::RecoveryCodeRedeemed,
        ]
    );
}

#[tokio::test]
async fn wrong_recovery_codes_and_wrong_otp_codes_share_one_lockout() {
    let w = world();
    let user = principal("rc-lock");
    let secret = ready(&w, &user).await;
    let codes = w
        .factors
        .generate_recovery_codes(&user, "rc-lock", 2)
        .await
        .unwrap();
    let checker = checker();
    // Two wrong OTP codes and one wrong recovery code: the limit of 3.
    for _ in 0..2 {
        assert_eq!(
            w.factors
                .check_otp(&checker, &id(&user), "000000")
                .await
                .err(),
            Some(ApplicationError::Factor(FactorError::InvalidCode))
        );
    }
    assert_eq!(
        w.factors
            .check_recovery_code(&checker, &id(&user), "AAAAA-AAAAA")
            .await
            .err(),
        Some(ApplicationError::Factor(FactorError::InvalidCode))
    );
    // Locked now: a right recovery code is not even looked at, nor an OTP code.
    assert!(matches!(
        w.factors
            .check_recovery_code(&checker, &id(&user), codes.codes[0].expose())
            .await,
        Err(ApplicationError::Factor(FactorError::Locked { .. }))
    ));
    let key = TotpKey::new(
        TotpSecret::from_base32(secret.expose_secret()).unwrap(),
        TotpParams::default(),
    );
    w.clock.advance(Duration::seconds(30));
    let otp = key.code_at(w.clock.now().timestamp() as u64);
    assert!(matches!(
        w.factors
            .check_otp(&checker, &id(&user), otp.expose_secret())
            .await,
        Err(ApplicationError::Factor(FactorError::Locked { .. }))
    ));
    let events = kinds(&w.store.events(&id(&user)));
    assert!(events.ends_with(&[
        EventKind::CheckFailed,
        EventKind::CheckFailed,
        EventKind::RecoveryCodeFailed,
        EventKind::Locked,
        EventKind::CheckRefusedLocked,
        EventKind::CheckRefusedLocked,
    ]));
    // After the lock, a right recovery code works and the count restarts.
    w.clock.advance(Duration::minutes(6));
    let redeemed = w
        .factors
        .check_recovery_code(&checker, &id(&user), codes.codes[0].expose())
        .await
        .unwrap();
    assert_eq!(redeemed.remaining, 1);
    assert_eq!(
        w.factors
            .check_otp(&checker, &id(&user), "000000")
            .await
            .err(),
        Some(ApplicationError::Factor(FactorError::InvalidCode)),
        "one wrong code after the reset does not lock"
    );
}

#[tokio::test]
async fn the_check_needs_the_trusted_caller_and_removal_takes_the_codes() {
    let w = world();
    let user = principal("rc-rm");
    ready(&w, &user).await;
    let codes = w
        .factors
        .generate_recovery_codes(&user, "rc-rm", 2)
        .await
        .unwrap();
    // The user themself is no trusted caller.
    assert_eq!(
        w.factors
            .check_recovery_code(&user, &id(&user), codes.codes[0].expose())
            .await
            .err(),
        Some(ApplicationError::PermissionDenied)
    );
    // Another user may not generate or remove them.
    let stranger = principal("rc-stranger");
    assert_eq!(
        w.factors
            .remove_recovery_codes(&stranger, "rc-rm")
            .await
            .err(),
        Some(ApplicationError::PermissionDenied)
    );
    w.factors
        .remove_recovery_codes(&user, "rc-rm")
        .await
        .unwrap();
    assert_eq!(
        w.factors.remove_recovery_codes(&user, "rc-rm").await.err(),
        Some(ApplicationError::NoRecoveryCodes)
    );
    w.factors
        .generate_recovery_codes(&user, "rc-rm", 1)
        .await
        .unwrap();
    // Removing the factor removes the codes too, with their own event.
    w.factors.remove_otp(&user).await.unwrap();
    let events = kinds(&w.store.events(&id(&user)));
    assert!(events.ends_with(&[EventKind::OtpRemoved, EventKind::RecoveryCodesRemoved]));
    assert_eq!(
        w.factors
            .check_recovery_code(&checker(), &id(&user), codes.codes[1].expose())
            .await
            .err(),
        Some(ApplicationError::NoRecoveryCodes)
    );
}

#[tokio::test]
async fn without_the_hasher_the_calls_are_unavailable() {
    let store = Arc::new(MemoryFactorStore::new());
    let cipher = Arc::new(AesGcmCipher::from_config(&SecretString::from(KEYS)).unwrap());
    let factors = OtpFactors::new(
        store,
        cipher,
        Arc::new(SeededSecrets::default()),
        FixedClock::at(t0()),
        TotpSettings::default(),
    );
    let user = principal("rc-unwired");
    assert!(matches!(
        factors
            .generate_recovery_codes(&user, "rc-unwired", 1)
            .await,
        Err(ApplicationError::Unavailable(_))
    ));
}
