//! The REST adapter in-process on the memory store, with fixed test tokens:
//! JSON shapes, error bodies, and what bad requests get. (Real tokens and
//! PostgreSQL are exercised by the bootstrap crate's API tests.)
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers")]

use std::sync::Arc;

use actix_web::body::to_bytes;
use actix_web::dev::ServiceResponse;
use actix_web::http::StatusCode;
use actix_web::{App, test};
use adapters_crypto::{AesGcmCipher, OsSecrets};
use adapters_http::{HttpState, routes};
use adapters_memory::MemoryFactorStore;
use application::testing::{FixedClock, StaticTokens, principal};
use application::{Authenticator, OtpFactors, TotpSettings};
use domain::{TotpKey, TotpParams, TotpSecret};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

/// The service's time in these tests: its clock stands still here (10 s
/// into a 30 s step), and the codes the tests type are computed for it.
const T0: chrono::DateTime<chrono::Utc> = match chrono::DateTime::from_timestamp(1_800_000_010, 0) {
    Some(at) => at,
    None => panic!("a valid time"),
};

fn state() -> HttpState {
    let store = Arc::new(MemoryFactorStore::new());
    let cipher = AesGcmCipher::from_config(&SecretString::from(
        "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    ))
    .unwrap();
    let factors = OtpFactors::new(
        store.clone(),
        Arc::new(cipher),
        Arc::new(OsSecrets),
        FixedClock::at(T0),
        TotpSettings {
            issuer: "ZITADEL".into(),
            params: TotpParams::default(),
            ..TotpSettings::default()
        },
    );
    let tokens = StaticTokens::default()
        .with("gigi-token", principal("gigi"))
        .with("bob-token", principal("bob"));
    HttpState {
        factors,
        auth: Authenticator::new(Arc::new(tokens)),
        readiness: store,
    }
}

async fn json_of(response: ServiceResponse) -> (StatusCode, Value) {
    let status = response.status();
    let bytes = to_bytes(response.into_body()).await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

macro_rules! app {
    () => {
        test::init_service(App::new().configure(routes(state()))).await
    };
}

fn post(path: &str) -> test::TestRequest {
    test::TestRequest::post()
        .uri(path)
        .insert_header(("Authorization", "Bearer gigi-token"))
}

const OTP: &str = "/auth/v1/users/me/auth_factors/otp";
const VERIFY: &str = "/auth/v1/users/me/auth_factors/otp/_verify";
const SEARCH: &str = "/auth/v1/users/me/auth_factors/_search";

fn current_code(secret: &str) -> String {
    let key = TotpKey::new(
        TotpSecret::from_base32(secret).unwrap(),
        TotpParams::default(),
    );
    let now = u64::try_from(T0.timestamp()).unwrap();
    key.code_at(now).expose_secret().to_owned()
}

#[actix_web::test]
async fn lifecycle_speaks_proto3_json() {
    let app = app!();
    let add = post(OTP)
        .insert_header(("Content-Type", "application/json"))
        .set_payload("{}")
        .to_request();
    let (status, added) = json_of(test::call_service(&app, add).await).await;
    assert_eq!(status, 200, "{added}");
    let secret = added["secret"].as_str().unwrap().to_owned();
    assert_eq!(
        added["url"],
        format!(
            "otpauth://totp/ZITADEL:gigi@example.com?algorithm=SHA1&digits=6&issuer=ZITADEL&period=30&secret={secret}"
        )
    );
    assert_eq!(added["details"]["sequence"], "1");
    assert_eq!(added["details"]["resourceOwner"], "org-1");
    assert_eq!(
        added["details"]["creationDate"],
        added["details"]["changeDate"]
    );
    assert!(
        added["details"]["changeDate"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );

    let (_, listed) = json_of(test::call_service(&app, post(SEARCH).to_request()).await).await;
    assert_eq!(listed, json!({}), "pending factors are not listed");

    let verify = post(VERIFY)
        .set_json(json!({"code": current_code(&secret)}))
        .to_request();
    let (status, verified) = json_of(test::call_service(&app, verify).await).await;
    assert_eq!(status, 200, "{verified}");
    assert_eq!(verified["details"]["sequence"], "2");
    assert!(verified["details"].get("creationDate").is_none());

    let (_, listed) =
        json_of(test::call_service(&app, post(SEARCH).set_payload("").to_request()).await).await;
    assert_eq!(
        listed,
        json!({"result": [{"state": "AUTH_FACTOR_STATE_READY", "otp": {}}]})
    );

    let remove = test::TestRequest::delete()
        .uri(OTP)
        .insert_header(("Authorization", "Bearer gigi-token"))
        .to_request();
    let (status, removed) = json_of(test::call_service(&app, remove).await).await;
    assert_eq!(
        (status.as_u16(), &removed["details"]["sequence"]),
        (200, &json!("3"))
    );
}

#[actix_web::test]
async fn contract_errors_carry_code_message_and_detail() {
    let app = app!();
    let (status, body) = json_of(
        test::call_service(
            &app,
            post(VERIFY)
                .set_json(json!({"code": "123456"}))
                .to_request(),
        )
        .await,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({"code": 5, "message": "Multifactor OTP (OneTimePassword) doesn't exist (COMMAND-3Mif9s)",
               "details": [{"@type": "type.googleapis.com/zitadel.v1.ErrorDetail", "id": "COMMAND-3Mif9s",
                            "message": "Multifactor OTP (OneTimePassword) doesn't exist"}]})
    );
}

#[actix_web::test]
async fn missing_and_bad_tokens_are_401_with_a_challenge() {
    let app = app!();
    let response = test::call_service(&app, test::TestRequest::post().uri(OTP).to_request()).await;
    assert!(response.headers().contains_key("www-authenticate"));
    let (status, body) = json_of(response).await;
    assert_eq!(
        (status.as_u16(), body),
        (401, json!({"code": 16, "message": "auth header missing"}))
    );

    for header in ["Bearer nope", "Basic Z2lnaTpwdw==", "gigi-token", "Bearer"] {
        let request = test::TestRequest::post()
            .uri(OTP)
            .insert_header(("Authorization", header))
            .to_request();
        let response = test::call_service(&app, request).await;
        assert!(response.headers().contains_key("www-authenticate"));
        let (status, body) = json_of(response).await;
        assert_eq!(status, 401, "{header}");
        assert_eq!(body["code"], 16);
        assert_eq!(body["details"][0]["id"], "AUTH-7fs1e");
        assert_eq!(body["message"], "Errors.Token.Invalid (AUTH-7fs1e)");
    }
}

#[actix_web::test]
async fn bad_bodies_are_400_code_3_and_change_nothing() {
    let app = app!();
    let too_big = format!(r#"{{"code":"{}"}}"#, "1".repeat(70 * 1024));
    let cases: Vec<(&str, &str, Option<&str>)> = vec![
        (VERIFY, r#"{"code": 123456}"#, None),
        (VERIFY, r#"{"code": "#, None),
        (VERIFY, "not json", None),
        (VERIFY, r#"["123456"]"#, None),
        (VERIFY, too_big.as_str(), None),
        (
            VERIFY,
            "code=123456",
            Some("application/x-www-form-urlencoded"),
        ),
        (OTP, r#"{"unknown": "#, None),
        (OTP, "[]", None),
        (SEARCH, "42", None),
    ];
    for (path, body, content_type) in cases {
        let mut request = post(path).set_payload(body.to_owned());
        if let Some(content_type) = content_type {
            request = request.insert_header(("Content-Type", content_type));
        }
        let (status, answer) = json_of(test::call_service(&app, request.to_request()).await).await;
        assert_eq!(status, 400, "{path} {body:.40}: {answer}");
        assert_eq!(answer["code"], 3);
        assert!(
            !answer["message"].as_str().unwrap().contains("123456"),
            "{answer}"
        );
    }
    let (_, body) = json_of(
        test::call_service(
            &app,
            post(VERIFY).set_json(json!({"code": ""})).to_request(),
        )
        .await,
    )
    .await;
    assert_eq!(
        body["message"],
        "invalid VerifyMyAuthFactorOTPRequest.Code: value length must be between 1 and 200 runes"
    );
    let (_, listed) = json_of(test::call_service(&app, post(SEARCH).to_request()).await).await;
    assert_eq!(listed, json!({}));
    let (status, _) = json_of(
        test::call_service(
            &app,
            post(OTP).set_payload(r#"{"unknown": 1}"#).to_request(),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "unknown fields are ignored");
}

#[actix_web::test]
async fn unknown_paths_and_wrong_methods_answer_like_the_gateway() {
    let app = app!();
    let (status, body) =
        json_of(test::call_service(&app, post("/auth/v1/nope").to_request()).await).await;
    assert_eq!(
        (status.as_u16(), body),
        (404, json!({"code": 5, "message": "Not Found"}))
    );
    let response = test::call_service(&app, test::TestRequest::get().uri(OTP).to_request()).await;
    assert_eq!(response.headers().get("allow").unwrap(), "POST, DELETE");
    let (status, body) = json_of(response).await;
    assert_eq!(
        (status.as_u16(), body),
        (405, json!({"code": 12, "message": "Method Not Allowed"}))
    );
    let request = test::TestRequest::put().uri(VERIFY).to_request();
    assert_eq!(test::call_service(&app, request).await.status(), 405);
}

#[actix_web::test]
async fn health_endpoints_answer() {
    let app = app!();
    let (status, body) = json_of(
        test::call_service(&app, test::TestRequest::get().uri("/healthz").to_request()).await,
    )
    .await;
    assert_eq!((status.as_u16(), body), (200, json!({"status": "ok"})));
    let (status, _) = json_of(
        test::call_service(&app, test::TestRequest::get().uri("/readyz").to_request()).await,
    )
    .await;
    assert_eq!(status, 200);
}
