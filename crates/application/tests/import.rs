//! Importing existing secrets: the administrators' call and the bulk path's
//! idempotence, on the in-memory store with a fixed clock.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers")]

use std::sync::Arc;

use adapters_crypto::AesGcmCipher;
use adapters_memory::{MemoryFactorStore, kinds};
use application::testing::{FixedClock, SeededSecrets, principal};
use application::{
    ApplicationError, BulkImported, ImportOtp, ListedFactor, OtpFactors, StatusCode, TotpSettings,
};
use chrono::{TimeZone, Utc};
use domain::{EventKind, FactorError, TotpKey, TotpParams, TotpSecret, UserId};
use secrecy::{ExposeSecret, SecretString};

const KEYS: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
const OTHER: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

fn world(settings: TotpSettings) -> (OtpFactors, Arc<MemoryFactorStore>, Arc<FixedClock>) {
    let store = Arc::new(MemoryFactorStore::new());
    let clock = FixedClock::at(Utc.timestamp_opt(1_742_554_287, 0).unwrap());
    let cipher = Arc::new(AesGcmCipher::from_config(&SecretString::from(KEYS)).unwrap());
    let factors = OtpFactors::new(
        store.clone(),
        cipher,
        Arc::new(SeededSecrets::default()),
        clock.clone(),
        settings,
    );
    (factors, store, clock)
}

fn import(secret: &str, ready: bool) -> ImportOtp {
    ImportOtp {
        secret: SecretString::from(secret),
        algorithm: String::new(),
        digits: 0,
        period: 0,
        ready,
    }
}

fn instance_admin() -> application::Principal {
    let mut admin = principal("admin");
    admin.roles = vec!["otp.instance_admin".into()];
    admin
}

fn code_now(secret: &str, clock: &FixedClock) -> String {
    use application::Clock as _;
    let key = TotpKey::new(
        TotpSecret::from_base32(secret).unwrap(),
        TotpParams::default(),
    );
    key.code_at(clock.now().timestamp() as u64)
        .expose_secret()
        .to_owned()
}

#[tokio::test]
async fn an_administrator_imports_ready_or_pending_and_a_ready_factor_refuses() {
    let (factors, store, clock) = world(TotpSettings::default());
    let admin = instance_admin();
    let details = factors
        .import_otp_for(&admin, "gigi", &import(SECRET, true))
        .await
        .unwrap();
    assert_eq!(details.sequence, 1);
    let gigi = principal("gigi");
    assert_eq!(
        factors.list_factors(&gigi).await.unwrap(),
        [ListedFactor::Otp]
    );
    let again = factors
        .import_otp_for(&admin, "gigi", &import(OTHER, false))
        .await
        .unwrap_err();
    assert_eq!(again, ApplicationError::Factor(FactorError::AlreadySetUp));
    assert_eq!(again.id(), Some("COMMAND-do9se"));

    // Not verified: pending until the user's first code.
    factors
        .import_otp_for(&admin, "lisa", &import(SECRET, false))
        .await
        .unwrap();
    let lisa = principal("lisa");
    assert!(factors.list_factors(&lisa).await.unwrap().is_empty());
    factors
        .verify_otp(&lisa, &code_now(SECRET, &clock))
        .await
        .unwrap();
    assert_eq!(
        kinds(&store.events(&UserId::parse("lisa").unwrap())),
        [EventKind::OtpImported, EventKind::OtpVerified]
    );
}

#[tokio::test]
async fn only_administrators_import_and_bad_input_is_invalid() {
    let (factors, store, _) = world(TotpSettings::default());
    let own = factors
        .import_otp_for(&principal("gigi"), "gigi", &import(SECRET, true))
        .await
        .unwrap_err();
    assert_eq!(own, ApplicationError::PermissionDenied);
    let admin = instance_admin();
    for (bad, field) in [
        (import("JBSWY3DPEHPK3PXP", true), "Secret"),
        (import("not base32!", true), "Secret"),
        (
            ImportOtp {
                algorithm: "MD5".into(),
                ..import(SECRET, true)
            },
            "Algorithm",
        ),
        (
            ImportOtp {
                digits: 7,
                ..import(SECRET, true)
            },
            "Digits",
        ),
        (
            ImportOtp {
                digits: 1000,
                ..import(SECRET, true)
            },
            "Digits",
        ),
        (
            ImportOtp {
                period: 301,
                ..import(SECRET, true)
            },
            "Period",
        ),
    ] {
        let error = factors
            .import_otp_for(&admin, "gigi", &bad)
            .await
            .unwrap_err();
        assert_eq!(error.code(), StatusCode::InvalidArgument, "{error}");
        assert!(
            error
                .to_string()
                .starts_with(&format!("invalid ImportTOTPRequest.{field}: ")),
            "{error}"
        );
        assert!(!error.to_string().contains("JBSW"), "{error}");
        assert!(!error.to_string().contains("255"), "{error}");
    }
    assert!(store.events(&UserId::parse("gigi").unwrap()).is_empty());

    // 80 bits with the legacy setting.
    let (legacy, _, _) = world(TotpSettings {
        import_allow_legacy_80_bit: true,
        ..TotpSettings::default()
    });
    legacy
        .import_otp_for(&admin, "gigi", &import("JBSWY3DPEHPK3PXP", true))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_bulk_import_skips_the_same_secret_and_refuses_another() {
    let (factors, store, _) = world(TotpSettings::default());
    let gigi = UserId::parse("gigi").unwrap();
    let org = Some(domain::OrgId::parse("org-1").unwrap());
    let first = factors
        .import_bulk(&gigi, org.clone(), &import(SECRET, true))
        .await
        .unwrap();
    let BulkImported::Imported(details) = first else {
        panic!("{first:?}")
    };
    assert_eq!(details.resource_owner, org);
    // Written differently, the same secret: skipped, nothing appended.
    let again = factors
        .import_bulk(&gigi, None, &import(&SECRET.to_lowercase(), true))
        .await
        .unwrap();
    assert_eq!(again, BulkImported::AlreadyImported);
    assert_eq!(store.events(&gigi).len(), 1);
    // Another secret, or the same one with other parameters: refused.
    let other = factors
        .import_bulk(&gigi, None, &import(OTHER, true))
        .await
        .unwrap_err();
    assert_eq!(other, ApplicationError::Factor(FactorError::AlreadySetUp));
    let eight = ImportOtp {
        digits: 8,
        ..import(SECRET, true)
    };
    assert_eq!(
        factors.import_bulk(&gigi, None, &eight).await.unwrap_err(),
        ApplicationError::Factor(FactorError::AlreadySetUp)
    );
    let events = store.events(&gigi);
    assert_eq!(kinds(&events), [EventKind::OtpImported]);
    assert_eq!(events[0].actor.as_str(), application::BULK_IMPORT_ACTOR);

    // A pending factor is replaced by the READY import.
    let lisa = principal("lisa");
    factors.add_otp(&lisa).await.unwrap();
    let replaced = factors
        .import_bulk(&lisa.user_id, None, &import(SECRET, true))
        .await
        .unwrap();
    assert!(matches!(replaced, BulkImported::Imported(_)));
    assert_eq!(
        factors.list_factors(&lisa).await.unwrap(),
        [ListedFactor::Otp]
    );
}
