//! The use cases' rules, on the in-memory store with a fixed clock and
//! predictable secrets.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers")]

use std::sync::Arc;

use adapters_crypto::AesGcmCipher;
use adapters_memory::{MemoryFactorStore, kinds};
use application::testing::principal;
use application::{ApplicationError, Clock, ListedFactor, StatusCode, TotpSettings};
use chrono::{DateTime, Duration, TimeZone, Utc};
use domain::{EventKind, FactorError, TotpAlgorithm, TotpKey, TotpParams, TotpSecret};
use secrecy::{ExposeSecret, SecretString};

const KEYS: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

type World = application::testing::World<MemoryFactorStore>;

fn t0() -> DateTime<Utc> {
    Utc.timestamp_opt(1_742_554_287, 198_765_432).unwrap()
}

fn world_with(params: TotpParams) -> World {
    world_with_settings(TotpSettings {
        issuer: "ZITADEL".into(),
        params,
        ..TotpSettings::default()
    })
}

fn world_with_settings(settings: TotpSettings) -> World {
    let cipher = Arc::new(AesGcmCipher::from_config(&SecretString::from(KEYS)).unwrap());
    World::new(Arc::new(MemoryFactorStore::new()), cipher, settings, t0())
}

fn world() -> World {
    world_with(TotpParams::default())
}

fn code(secret: &SecretString, params: TotpParams, at: DateTime<Utc>) -> String {
    let key = TotpKey::new(
        TotpSecret::from_base32(secret.expose_secret()).unwrap(),
        params,
    );
    key.code_at(at.timestamp() as u64)
        .expose_secret()
        .to_owned()
}

#[tokio::test]
async fn add_returns_url_secret_and_details_of_the_added_event() {
    let w = world();
    let gigi = principal("gigi");
    let added = w.factors.add_otp(&gigi).await.unwrap();
    let secret = added.secret.expose_secret();
    assert_eq!(secret.len(), 32);
    assert_eq!(
        added.url.expose_secret(),
        format!(
            "otpauth://totp/ZITADEL:gigi@example.com?algorithm=SHA1&digits=6&issuer=ZITADEL&period=30&secret={secret}"
        )
    );
    let micros = Utc.timestamp_opt(1_742_554_287, 198_765_000).unwrap();
    assert_eq!(added.details.sequence, 1);
    assert_eq!(
        added.details.creation_date,
        Some(micros),
        "time kept at microseconds"
    );
    assert_eq!(added.details.change_date, micros);
    assert_eq!(added.details.resource_owner.unwrap().as_str(), "org-1");
}

#[tokio::test]
async fn the_lifecycle_appends_one_event_per_change() {
    let w = world();
    let user = principal("lifecycle");
    let added = w.factors.add_otp(&user).await.unwrap();
    assert!(
        w.factors.list_factors(&user).await.unwrap().is_empty(),
        "pending is not listed"
    );

    w.clock.advance(Duration::seconds(5));
    let verified = w
        .factors
        .verify_otp(
            &user,
            &code(&added.secret, TotpParams::default(), w.clock.now()),
        )
        .await
        .unwrap();
    assert_eq!(verified.sequence, 2);
    assert_eq!(verified.creation_date, None);
    assert_eq!(
        w.factors.list_factors(&user).await.unwrap(),
        vec![ListedFactor::Otp]
    );

    let removed = w.factors.remove_otp(&user).await.unwrap();
    assert_eq!(removed.sequence, 3);
    assert!(w.factors.list_factors(&user).await.unwrap().is_empty());
    assert_eq!(w.factors.add_otp(&user).await.unwrap().details.sequence, 4);
    assert_eq!(
        kinds(&w.store.events(&user.user_id)),
        [
            EventKind::OtpAdded,
            EventKind::OtpVerified,
            EventKind::OtpRemoved,
            EventKind::OtpAdded
        ]
    );
}

#[tokio::test]
async fn adding_again_while_pending_replaces_the_secret() {
    let w = world();
    let user = principal("again");
    let first = w.factors.add_otp(&user).await.unwrap();
    let second = w.factors.add_otp(&user).await.unwrap();
    assert_ne!(first.secret.expose_secret(), second.secret.expose_secret());
    assert_eq!(second.details.sequence, 2);
    let old = code(&first.secret, TotpParams::default(), t0());
    let new = code(&second.secret, TotpParams::default(), t0());
    assert_ne!(old, new);
    assert_eq!(
        w.factors.verify_otp(&user, &old).await,
        Err(FactorError::InvalidCode.into())
    );
    assert!(w.factors.verify_otp(&user, &new).await.is_ok());
}

#[tokio::test]
async fn add_when_ready_is_already_exists() {
    let w = world();
    let user = principal("ready");
    let added = w.factors.add_otp(&user).await.unwrap();
    w.factors
        .verify_otp(&user, &code(&added.secret, TotpParams::default(), t0()))
        .await
        .unwrap();
    let error = w.factors.add_otp(&user).await.unwrap_err();
    assert_eq!(error, FactorError::AlreadySetUp.into());
    assert_eq!(
        (error.code(), error.id()),
        (StatusCode::AlreadyExists, Some("COMMAND-do9se"))
    );
    assert_eq!(
        w.store.events(&user.user_id).len(),
        2,
        "a refused add appends nothing"
    );
}

#[tokio::test]
async fn verify_rows_of_the_contract() {
    // More tries than the list below, so the attempt limit stays out of it.
    let w = world_with_settings(TotpSettings {
        issuer: "ZITADEL".into(),
        attempts: domain::AttemptPolicy::new(10, Duration::minutes(5)).unwrap(),
        ..TotpSettings::default()
    });
    let user = principal("verify");
    assert_eq!(
        w.factors.verify_otp(&user, "123456").await,
        Err(FactorError::NothingToVerify.into())
    );
    let added = w.factors.add_otp(&user).await.unwrap();
    let right = code(&added.secret, TotpParams::default(), t0());
    let wrong = if right == "000000" {
        "000001"
    } else {
        "000000"
    };
    for bad in [wrong, "12345", "1234567", "abcdef", " 123456"] {
        assert_eq!(
            w.factors.verify_otp(&user, bad).await,
            Err(FactorError::InvalidCode.into()),
            "{bad:?}"
        );
    }
    for (empty_or_long, chars) in [(String::new(), 0), ("1".repeat(201), 201)] {
        let error = w
            .factors
            .verify_otp(&user, &empty_or_long)
            .await
            .unwrap_err();
        assert!(
            matches!(error, ApplicationError::InvalidRequest(_)),
            "{chars} chars: {error:?}"
        );
        assert_eq!(error.code(), StatusCode::InvalidArgument);
    }
    w.factors.verify_otp(&user, &right).await.unwrap();
    assert_eq!(
        w.factors.verify_otp(&user, &right).await,
        Err(FactorError::AlreadyVerified.into())
    );
}

#[tokio::test]
async fn verify_accepts_the_previous_and_next_step_only() {
    for (offset, accepted) in [
        (-60, false),
        (-30, true),
        (0, true),
        (30, true),
        (60, false),
    ] {
        let w = world();
        let user = principal("window");
        let added = w.factors.add_otp(&user).await.unwrap();
        let at = t0() + Duration::seconds(offset);
        let result = w
            .factors
            .verify_otp(&user, &code(&added.secret, TotpParams::default(), at))
            .await;
        assert_eq!(result.is_ok(), accepted, "offset {offset}: {result:?}");
    }
}

#[tokio::test]
async fn remove_rows_of_the_contract() {
    let w = world();
    let user = principal("remove");
    let error = w.factors.remove_otp(&user).await.unwrap_err();
    assert_eq!(
        (error.code(), error.id()),
        (StatusCode::NotFound, Some("COMMAND-Hd9sd"))
    );
    w.factors.add_otp(&user).await.unwrap();
    assert_eq!(
        w.factors.remove_otp(&user).await.unwrap().sequence,
        2,
        "a pending factor can be removed"
    );
}

#[tokio::test]
async fn users_only_ever_touch_their_own_factor() {
    let w = world();
    let (alice, bob) = (principal("alice"), principal("bob"));
    let added = w.factors.add_otp(&alice).await.unwrap();
    let alice_code = code(&added.secret, TotpParams::default(), t0());
    assert_eq!(
        w.factors.verify_otp(&bob, &alice_code).await,
        Err(FactorError::NothingToVerify.into())
    );
    assert_eq!(
        w.factors.remove_otp(&bob).await,
        Err(FactorError::NothingToRemove.into())
    );
    assert!(w.factors.verify_otp(&alice, &alice_code).await.is_ok());
}

#[tokio::test]
async fn factors_keep_the_parameters_they_were_enrolled_with() {
    let params = TotpParams::new(TotpAlgorithm::Sha256, 8, 60, 1).unwrap();
    let w = world_with(params);
    let user = principal("params");
    let added = w.factors.add_otp(&user).await.unwrap();
    assert!(
        added
            .url
            .expose_secret()
            .contains("?algorithm=SHA256&digits=8&issuer=ZITADEL&period=60&secret=")
    );
    let right = code(&added.secret, params, t0());
    assert_eq!(right.len(), 8);
    assert!(w.factors.verify_otp(&user, &right).await.is_ok());
}

#[tokio::test]
async fn the_account_falls_back_to_the_user_id() {
    let w = world();
    let mut user = principal("no-login-name");
    user.login_name = None;
    let added = w.factors.add_otp(&user).await.unwrap();
    assert!(
        added
            .url
            .expose_secret()
            .starts_with("otpauth://totp/ZITADEL:no-login-name?")
    );
}
