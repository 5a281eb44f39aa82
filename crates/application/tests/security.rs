//! The security rules (docs/security.md) on the in-memory store with a fixed clock: replay
//! protection, attempt limits, pending expiry, the trusted login check and
//! key rotation.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers")]

use std::sync::Arc;

use adapters_crypto::AesGcmCipher;
use adapters_memory::{MemoryFactorStore, kinds};
use application::testing::principal;
use application::{
    ApplicationError, CallerAllowlist, Clock, FactorStore, KeyRotation, Principal,
    RecentAuthPolicy, RotationReport, SecretCipher, StatusCode, TotpSettings,
};
use chrono::{DateTime, Duration, TimeZone, Utc};
use domain::{AttemptPolicy, EventKind, FactorError};
use secrecy::{ExposeSecret, SecretString};

const K1: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const K2: &str = "k2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

type World = application::testing::World<MemoryFactorStore>;

fn t0() -> DateTime<Utc> {
    // 10 seconds into a 30-second step, so +-1 step is unambiguous.
    Utc.timestamp_opt(1_800_000_010, 0).unwrap()
}

fn settings() -> TotpSettings {
    TotpSettings {
        issuer: "ZITADEL".into(),
        attempts: AttemptPolicy::new(3, Duration::minutes(5)).unwrap(),
        check_clients: CallerAllowlist::new(["login-service"]),
        ..TotpSettings::default()
    }
}

fn world_over(store: Arc<MemoryFactorStore>, keys: &str, settings: TotpSettings) -> World {
    let cipher = Arc::new(AesGcmCipher::from_config(&SecretString::from(keys)).unwrap());
    World::new(store, cipher, settings, t0())
}

fn world() -> World {
    world_over(Arc::new(MemoryFactorStore::new()), K1, settings())
}

/// A trusted caller: a service account whose token grants `otp.check`.
fn login_service() -> Principal {
    let mut caller = principal("login-service");
    caller.scopes = vec!["openid".into(), "otp.check".into()];
    caller
}

fn events(w: &World, user: &Principal) -> Vec<EventKind> {
    kinds(&w.store.events(&user.user_id))
}

#[tokio::test]
async fn the_setup_code_can_never_be_replayed_at_login() {
    let w = world();
    let user = principal("replay-setup");
    let added = w.factors.add_otp(&user).await.unwrap();
    let setup_code = w.code(&added.secret, 0);
    w.factors.verify_otp(&user, &setup_code).await.unwrap();

    let replayed = w
        .factors
        .check_otp(&login_service(), &user.user_id, &setup_code)
        .await
        .unwrap_err();
    assert_eq!(replayed, FactorError::Reused.into());
    assert_eq!(
        (replayed.code(), replayed.id()),
        (StatusCode::InvalidArgument, Some("TOTP-Auw0a"))
    );
    // Nor the previous step's code, which is still inside the window.
    let earlier = w.code(&added.secret, -1);
    assert_eq!(
        w.factors
            .check_otp(&login_service(), &user.user_id, &earlier)
            .await,
        Err(FactorError::Reused.into())
    );
}

#[tokio::test]
async fn a_login_code_is_accepted_once_and_the_next_step_passes() {
    let w = world();
    let user = principal("replay-login");
    let secret = w.enrolled(&user).await;
    w.clock.advance(Duration::seconds(30));
    let code = w.code(&secret, 0);
    let caller = login_service();
    let details = w
        .factors
        .check_otp(&caller, &user.user_id, &code)
        .await
        .unwrap();
    assert_eq!(details.sequence, 3);
    assert_eq!(details.change_date, w.clock.now());
    assert_eq!(details.resource_owner, None);
    assert_eq!(
        w.factors.check_otp(&caller, &user.user_id, &code).await,
        Err(FactorError::Reused.into()),
        "replay within the window"
    );
    // The next step's code (an authenticator a little ahead) passes.
    let next = w.code(&secret, 1);
    assert!(
        w.factors
            .check_otp(&caller, &user.user_id, &next)
            .await
            .is_ok()
    );
    assert_eq!(
        events(&w, &user),
        [
            EventKind::OtpAdded,
            EventKind::OtpVerified,
            EventKind::CheckSucceeded,
            EventKind::CheckFailed,
            EventKind::CheckSucceeded,
        ]
    );
    let actors: Vec<_> = w
        .store
        .events(&user.user_id)
        .iter()
        .map(|e| e.actor.as_str().to_owned())
        .collect();
    assert_eq!(actors[2], "login-service", "the caller acted");
}

#[tokio::test]
async fn max_attempts_failures_lock_until_the_lockout_has_passed() {
    let w = world();
    let user = principal("lockout");
    let secret = w.enrolled(&user).await;
    let caller = login_service();
    let id = &user.user_id;
    w.clock.advance(Duration::seconds(60));
    let wrong = w.wrong_code(&secret);
    for _ in 0..3 {
        assert_eq!(
            w.factors.check_otp(&caller, id, &wrong).await,
            Err(FactorError::InvalidCode.into())
        );
    }
    let locked_at = w.clock.now();
    // The right code during the lockout is refused, and says until when.
    w.clock.advance(Duration::seconds(60));
    let right = w.code(&secret, 0);
    let error = w.factors.check_otp(&caller, id, &right).await.unwrap_err();
    let until = locked_at + Duration::minutes(5);
    assert_eq!(error, FactorError::Locked { until }.into());
    assert_eq!(
        (error.code(), error.id()),
        (StatusCode::FailedPrecondition, Some("COMMAND-SF3fg"))
    );
    assert!(error.text().starts_with("User is locked until "));
    // Setup verification of the same user is locked too (it is per user).
    assert_eq!(
        w.factors.verify_otp(&user, &right).await,
        Err(FactorError::AlreadyVerified.into()),
        "state rules come first"
    );
    w.clock.advance(Duration::seconds(239));
    assert!(matches!(
        w.factors.check_otp(&caller, id, &w.code(&secret, 0)).await,
        Err(ApplicationError::Factor(FactorError::Locked { .. }))
    ));
    // Over: the right code works and resets the count.
    w.clock.advance(Duration::seconds(1));
    w.factors
        .check_otp(&caller, id, &w.code(&secret, 0))
        .await
        .unwrap();
    w.clock.advance(Duration::seconds(30));
    for _ in 0..2 {
        assert_eq!(
            w.factors
                .check_otp(&caller, id, &w.wrong_code(&secret))
                .await,
            Err(FactorError::InvalidCode.into())
        );
    }
    w.factors
        .check_otp(&caller, id, &w.code(&secret, 0))
        .await
        .unwrap();
    let events = events(&w, &user);
    assert_eq!(
        events.iter().filter(|k| **k == EventKind::Locked).count(),
        1
    );
    assert_eq!(
        events[2..6],
        [
            EventKind::CheckFailed,
            EventKind::CheckFailed,
            EventKind::CheckFailed,
            EventKind::Locked
        ]
    );
}

#[tokio::test]
async fn setup_verification_counts_wrong_codes_too() {
    let w = world();
    let user = principal("setup-lockout");
    let added = w.factors.add_otp(&user).await.unwrap();
    let wrong = w.wrong_code(&added.secret);
    for _ in 0..3 {
        assert_eq!(
            w.factors.verify_otp(&user, &wrong).await,
            Err(FactorError::InvalidCode.into())
        );
    }
    let right = w.code(&added.secret, 0);
    assert!(matches!(
        w.factors.verify_otp(&user, &right).await,
        Err(ApplicationError::Factor(FactorError::Locked { .. }))
    ));
    // Setup failures append no event of their own; the lock does.
    assert_eq!(events(&w, &user), [EventKind::OtpAdded, EventKind::Locked]);
    // A fresh factor does not reset the count: adding again is no way around it.
    let again = w.factors.add_otp(&user).await.unwrap();
    assert!(matches!(
        w.factors.verify_otp(&user, &w.code(&again.secret, 0)).await,
        Err(ApplicationError::Factor(FactorError::Locked { .. }))
    ));
    w.clock.advance(Duration::minutes(5));
    w.factors
        .verify_otp(&user, &w.code(&again.secret, 0))
        .await
        .unwrap();
}

#[tokio::test]
async fn pending_factors_expire_after_their_time_to_live() {
    let w = world();
    let user = principal("expiry");
    let added = w.factors.add_otp(&user).await.unwrap();
    w.clock.advance(Duration::minutes(10));
    let late = w.code(&added.secret, 0);
    assert_eq!(
        w.factors.verify_otp(&user, &late).await,
        Err(FactorError::NothingToVerify.into())
    );
    assert_eq!(
        w.store.find(&user.user_id).await.unwrap(),
        None,
        "the stale factor was cleaned up"
    );
    // Add creates a fresh one, whatever was there.
    let fresh = w.factors.add_otp(&user).await.unwrap();
    assert_ne!(fresh.secret.expose_secret(), added.secret.expose_secret());
    w.clock
        .advance(Duration::minutes(10) - Duration::seconds(1));
    w.factors
        .verify_otp(&user, &w.code(&fresh.secret, 0))
        .await
        .unwrap();
    // READY factors never expire.
    w.clock.advance(Duration::days(400));
    assert_eq!(w.factors.list_factors(&user).await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_expired_pending_factor_cannot_be_removed_and_add_over_it_works() {
    let w = world();
    let user = principal("expiry-remove");
    w.factors.add_otp(&user).await.unwrap();
    w.clock.advance(Duration::minutes(11));
    assert_eq!(
        w.factors.remove_otp(&user).await,
        Err(FactorError::NothingToRemove.into())
    );
    let other = principal("expiry-add");
    w.factors.add_otp(&other).await.unwrap();
    w.clock.advance(Duration::minutes(11));
    assert_eq!(w.factors.add_otp(&other).await.unwrap().details.sequence, 2);
    // The purge removes what nobody came back for.
    let idle = principal("expiry-idle");
    w.factors.add_otp(&idle).await.unwrap();
    w.clock.advance(Duration::minutes(11));
    let purged = w
        .store
        .purge_pending(w.clock.now() - Duration::minutes(10))
        .await
        .unwrap();
    assert_eq!(purged, 2, "idle and other");
    assert_eq!(w.store.find(&idle.user_id).await.unwrap(), None);
}

#[tokio::test]
async fn the_check_needs_the_scope_a_ready_factor_and_valid_input() {
    let w = world();
    let user = principal("check-rules");
    let id = &user.user_id;
    let error = w
        .factors
        .check_otp(&principal("plain-user"), id, "123456")
        .await
        .unwrap_err();
    assert_eq!(error, ApplicationError::PermissionDenied);
    assert_eq!(error.code(), StatusCode::PermissionDenied);
    let caller = login_service();
    assert_eq!(
        w.factors.check_otp(&caller, id, "123456").await,
        Err(FactorError::NothingToVerify.into())
    );
    let added = w.factors.add_otp(&user).await.unwrap();
    assert_eq!(
        w.factors
            .check_otp(&caller, id, &w.code(&added.secret, 0))
            .await,
        Err(FactorError::NothingToVerify.into()),
        "a pending factor cannot log in"
    );
    for (user_id, code) in [(id, ""), (id, &"1".repeat(201))] {
        let error = w
            .factors
            .check_otp(&caller, user_id, code)
            .await
            .unwrap_err();
        assert!(
            matches!(error, ApplicationError::InvalidRequest(_)),
            "{error:?}"
        );
    }
}

#[tokio::test]
async fn rotation_reseals_under_the_new_key_and_resumes_after_an_interruption() {
    let store = Arc::new(MemoryFactorStore::new());
    let before = world_over(store.clone(), K1, settings());
    let users: Vec<Principal> = (0..5).map(|i| principal(&format!("rotate-{i}"))).collect();
    let mut secrets = Vec::new();
    for user in &users {
        secrets.push(before.enrolled(user).await);
    }

    // k2 first: it seals; k1 still opens.
    let both =
        Arc::new(AesGcmCipher::from_config(&SecretString::from(format!("{K2},{K1}"))).unwrap());
    assert_eq!(both.active_key_id(), "k2");
    let rotation = KeyRotation::new(store.clone(), both);
    let mut progress = Vec::new();
    let first = rotation
        .run(2, Some(1), &mut |report: &RotationReport| {
            progress.push(*report)
        })
        .await
        .unwrap();
    assert_eq!(
        (first.batches, first.resealed),
        (1, 2),
        "interrupted after one batch"
    );
    let rest = rotation
        .run(2, None, &mut |report: &RotationReport| {
            progress.push(*report)
        })
        .await
        .unwrap();
    assert_eq!((rest.examined, rest.resealed, rest.failed), (3, 3, 0));
    assert!(rest.complete());
    assert_eq!(progress.len(), 4, "one batch, then three over all five");
    let again = rotation
        .run(2, None, &mut |_: &RotationReport| {})
        .await
        .unwrap();
    assert_eq!(
        (again.scanned, again.examined, again.resealed),
        (5, 0, 0),
        "every secret looked at, nothing left to do"
    );

    // k1 removed: every factor still verifies.
    let after = world_over(store, K2, settings());
    after.clock.advance(Duration::seconds(30));
    for (user, secret) in users.iter().zip(&secrets) {
        after
            .factors
            .check_otp(&login_service(), &user.user_id, &after.code(secret, 0))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn rotation_reports_secrets_it_cannot_open_and_leaves_them() {
    let store = Arc::new(MemoryFactorStore::new());
    let before = world_over(store.clone(), K1, settings());
    before.enrolled(&principal("rotate-lost")).await;
    // k1 is gone before the rotation: the secret cannot be re-sealed.
    let only_k2 = Arc::new(AesGcmCipher::from_config(&SecretString::from(K2)).unwrap());
    let report = KeyRotation::new(store, only_k2)
        .run(10, None, &mut |_: &RotationReport| {})
        .await
        .unwrap();
    assert_eq!((report.examined, report.resealed, report.failed), (1, 0, 1));
    assert!(!report.complete());
}

#[tokio::test]
async fn the_check_needs_a_listed_client_besides_the_scope() {
    let w = world();
    let user = principal("check-clients");
    let secret = w.enrolled(&user).await;
    let id = &user.user_id;
    let before = events(&w, &user);

    // A token with the scope but from a client not on the list: refused
    // before the code is looked at; nothing recorded, no attempt counted.
    let mut stranger = principal("device-app-user");
    stranger.scopes = vec!["otp.check".into()];
    stranger.client_id = Some("device-app".into());
    for _ in 0..5 {
        assert_eq!(
            w.factors
                .check_otp(&stranger, id, &w.wrong_code(&secret))
                .await,
            Err(ApplicationError::PermissionDenied)
        );
    }
    assert_eq!(events(&w, &user), before);

    // Listed by client id or azp (the user id is `sub`, listed as well).
    let mut by_client = stranger.clone();
    by_client.client_id = Some("login-service".into());
    w.factors
        .check_otp(&by_client, id, &w.code(&secret, 1))
        .await
        .unwrap();
    let mut by_azp = stranger.clone();
    by_azp.authorized_party = Some("login-service".into());
    w.clock.advance(Duration::seconds(60));
    w.factors
        .check_otp(&by_azp, id, &w.code(&secret, 0))
        .await
        .unwrap();

    // The default list is empty: nobody may check.
    let closed = world_over(
        Arc::new(MemoryFactorStore::new()),
        K1,
        TotpSettings::default(),
    );
    let secret = closed.enrolled(&user).await;
    assert_eq!(
        closed
            .factors
            .check_otp(&login_service(), id, &closed.code(&secret, 1))
            .await,
        Err(ApplicationError::PermissionDenied)
    );
}

fn recent_auth_world() -> World {
    world_over(
        Arc::new(MemoryFactorStore::new()),
        K1,
        TotpSettings {
            recent_auth: RecentAuthPolicy {
                max_age: Some(Duration::minutes(5)),
                methods: vec!["mfa".into(), "otp".into()],
            },
            ..settings()
        },
    )
}

#[tokio::test]
async fn remove_needs_a_recent_strong_sign_in_when_the_policy_is_on() {
    let w = recent_auth_world();
    let mut user = principal("recent-remove");
    user.auth_time = Some(t0());
    user.amr = vec!["pwd".into(), "mfa".into()];
    w.enrolled(&user).await;

    let mut stolen = user.clone();
    stolen.auth_time = Some(t0() - Duration::minutes(6));
    let mut weak = user.clone();
    weak.amr = vec!["pwd".into()];
    let mut unknown = user.clone();
    unknown.auth_time = None;
    for token in [&stolen, &weak, &unknown] {
        let error = w.factors.remove_otp(token).await.unwrap_err();
        assert_eq!(error, ApplicationError::RecentAuthRequired);
        assert_eq!(error.code(), StatusCode::Unauthenticated);
    }
    assert_eq!(
        events(&w, &user),
        [EventKind::OtpAdded, EventKind::OtpVerified]
    );
    w.factors.remove_otp(&user).await.unwrap();

    // Off (the default): any valid token removes.
    let open = world();
    open.enrolled(&stolen).await;
    open.factors.remove_otp(&stolen).await.unwrap();
}

#[tokio::test]
async fn add_over_an_existing_factor_needs_a_recent_sign_in_but_a_first_add_does_not() {
    let w = recent_auth_world();
    let mut stolen = principal("recent-add");
    stolen.auth_time = Some(t0() - Duration::hours(2));
    // No factor yet: enrolling needs nothing more than a valid token.
    w.factors.add_otp(&stolen).await.unwrap();
    // A pending factor exists: replacing it does.
    assert_eq!(
        w.factors.add_otp(&stolen).await.unwrap_err(),
        ApplicationError::RecentAuthRequired
    );
    assert_eq!(events(&w, &stolen), [EventKind::OtpAdded]);
    let mut fresh = stolen.clone();
    fresh.auth_time = Some(t0());
    fresh.amr = vec!["otp".into()];
    w.factors.add_otp(&fresh).await.unwrap();
    assert_eq!(
        events(&w, &stolen),
        [EventKind::OtpAdded, EventKind::OtpAdded]
    );
}

#[tokio::test]
async fn locks_escalate_then_max_failures_disable_until_the_factor_is_removed() {
    let settings = TotpSettings {
        attempts: AttemptPolicy::escalating(3, Duration::minutes(5), Duration::minutes(15), 6)
            .unwrap(),
        ..settings()
    };
    let w = world_over(Arc::new(MemoryFactorStore::new()), K1, settings);
    let user = principal("escalation");
    let secret = w.enrolled(&user).await;
    let caller = login_service();
    let id = &user.user_id;
    w.clock.advance(Duration::seconds(60));
    for _ in 0..3 {
        assert_eq!(
            w.factors
                .check_otp(&caller, id, &w.wrong_code(&secret))
                .await,
            Err(FactorError::InvalidCode.into())
        );
    }
    // Each lock waited out, a wrong code locks twice as long: 5, 10, then
    // 15 minutes (the cap), until the sixth in a row disables.
    for (wait, next_lock) in [(5, Some(10)), (10, Some(15)), (15, None)] {
        w.clock.advance(Duration::minutes(wait));
        let failed_at = w.clock.now();
        assert_eq!(
            w.factors
                .check_otp(&caller, id, &w.wrong_code(&secret))
                .await,
            Err(FactorError::InvalidCode.into())
        );
        w.clock.advance(Duration::seconds(1));
        let error = w
            .factors
            .check_otp(&caller, id, &w.code(&secret, 0))
            .await
            .unwrap_err();
        let expected = match next_lock {
            Some(minutes) => FactorError::Locked {
                until: failed_at + Duration::minutes(minutes),
            },
            None => FactorError::Disabled,
        };
        assert_eq!(error, expected.into(), "after waiting {wait}m");
    }
    // Disabled: even long after, a right code is refused, 9 OTP-DISABLED.
    w.clock.advance(Duration::days(30));
    let error = w
        .factors
        .check_otp(&caller, id, &w.code(&secret, 0))
        .await
        .unwrap_err();
    assert_eq!(
        (error.code(), error.id()),
        (StatusCode::FailedPrecondition, Some("OTP-DISABLED"))
    );
    // Removing the factor restarts the count: a new factor works.
    w.factors.remove_otp(&user).await.unwrap();
    let secret = w.enrolled(&user).await;
    w.clock.advance(Duration::seconds(60));
    w.factors
        .check_otp(&caller, id, &w.code(&secret, 0))
        .await
        .unwrap();
}

#[tokio::test]
async fn checks_while_locked_are_recorded_with_the_caller_without_extending_the_lock() {
    let w = world();
    let user = principal("refused-locked");
    let secret = w.enrolled(&user).await;
    let caller = login_service();
    let id = &user.user_id;
    w.clock.advance(Duration::seconds(60));
    for _ in 0..3 {
        let _ = w
            .factors
            .check_otp(&caller, id, &w.wrong_code(&secret))
            .await;
    }
    let until = w.clock.now() + Duration::minutes(5);
    for _ in 0..2 {
        w.clock.advance(Duration::seconds(30));
        assert_eq!(
            w.factors
                .check_otp(&caller, id, &w.wrong_code(&secret))
                .await,
            Err(FactorError::Locked { until }.into()),
            "the lock does not move"
        );
    }
    let recorded = w.store.events(&user.user_id);
    let refused: Vec<_> = recorded
        .iter()
        .filter(|e| e.event.kind == EventKind::CheckRefusedLocked)
        .collect();
    assert_eq!(refused.len(), 2);
    assert!(refused.iter().all(|e| e.actor == caller.user_id));
    assert_eq!(
        EventKind::CheckRefusedLocked.as_str(),
        "otp.check.refused_locked"
    );
    // The lock ends when it said, and a right code works then.
    w.clock.advance(until - w.clock.now());
    w.factors
        .check_otp(&caller, id, &w.code(&secret, 0))
        .await
        .unwrap();
}
