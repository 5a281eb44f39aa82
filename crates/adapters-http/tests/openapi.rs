//! The OpenAPI document (`docs/openapi.json`): the committed copy is what the
//! code generates, `GET /openapi.json` serves it on the public listener, and
//! each path and method it lists is one the routes answer.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers")]

use std::path::PathBuf;
use std::sync::Arc;

use actix_web::App;
use actix_web::http::Method;
use actix_web::test as atest;
use adapters_clock::SystemClock;
use adapters_crypto::{AesGcmCipher, OsSecrets};
use adapters_http::{HttpState, internal_routes, openapi_json, public_routes, routes};
use adapters_memory::MemoryFactorStore;
use application::testing::{StaticTokens, principal};
use application::{Authenticator, OtpFactors, TotpSettings};
use domain::TotpParams;
use secrecy::SecretString;
use serde_json::Value;

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
        Arc::new(SystemClock),
        TotpSettings {
            issuer: "ZITADEL".into(),
            params: TotpParams::default(),
            ..TotpSettings::default()
        },
    );
    let tokens = StaticTokens::default().with("gigi-token", principal("gigi"));
    HttpState {
        factors,
        auth: Authenticator::new(Arc::new(tokens)),
        readiness: store,
    }
}

/// The operations of a path item (its other keys, such as `servers`, left out).
fn operations(item: &Value) -> impl Iterator<Item = (&String, &Value)> {
    item.as_object()
        .unwrap()
        .iter()
        .filter(|(key, _)| ["get", "post", "delete", "put", "patch"].contains(&key.as_str()))
}

fn committed() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json")
}

#[test]
fn the_committed_document_is_what_the_code_generates() {
    let generated = format!("{}\n", openapi_json().unwrap());
    let path = committed();
    if std::env::var_os("UPDATE_OPENAPI").is_some_and(|v| v == "1") {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "docs/openapi.json is stale (or missing): regenerate it with\n  \
         UPDATE_OPENAPI=1 cargo test -p adapters-http --test openapi\nand commit it"
    );
}

#[test]
fn the_document_states_the_wire() {
    let doc: Value = serde_json::from_str(&openapi_json().unwrap()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc["paths"]["/v1/users/{user_id}/otp/_check"]["servers"][0]["url"],
        "http://127.0.0.1:8082"
    );
    let schemas = &doc["components"]["schemas"];
    let details = &schemas["zitadel.v1.ObjectDetails"]["properties"];
    assert_eq!(details["sequence"]["type"], "string");
    assert_eq!(details["changeDate"]["format"], "date-time");
    assert_eq!(details["creationDate"]["format"], "date-time");
    assert_eq!(
        schemas["zitadel.v1.ErrorDetail"]["properties"]["@type"]["type"],
        "string"
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let mut paths: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    paths.sort_unstable();
    assert_eq!(
        paths,
        [
            "/auth/v1/users/me/auth_factors/_search",
            "/auth/v1/users/me/auth_factors/otp",
            "/auth/v1/users/me/auth_factors/otp/_verify",
            "/healthz",
            "/management/v1/users/{user_id}/auth_factors/_search",
            "/management/v1/users/{user_id}/auth_factors/otp",
            "/readyz",
            "/v1/users/{user_id}/otp/_check",
            "/v1/users/{user_id}/recovery_codes/_check",
            "/v2/users/{user_id}/authentication_methods",
            "/v2/users/{user_id}/recovery_codes",
            "/v2/users/{user_id}/totp",
            "/v2/users/{user_id}/totp/_import",
            "/v2/users/{user_id}/totp/verify",
        ]
    );
    // Every call but the probes: the bearer scheme, and a google.rpc.Status
    // for every non-2xx answer.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in operations(item) {
            let answers = operation["responses"].as_object().unwrap();
            if path.ends_with("z") {
                assert!(operation.get("security").is_none(), "{method} {path}");
                continue;
            }
            assert_eq!(operation["security"][0]["bearer"], serde_json::json!([]));
            assert!(answers.contains_key("default"), "{method} {path}");
            for (status, answer) in answers {
                if status.starts_with('2') {
                    continue;
                }
                let name = answer["$ref"]
                    .as_str()
                    .and_then(|r| r.strip_prefix("#/components/responses/"))
                    .unwrap_or_else(|| panic!("{method} {path} {status}: {answer}"));
                assert_eq!(
                    doc["components"]["responses"][name]["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/google.rpc.Status",
                    "{method} {path} {status}"
                );
            }
        }
    }
}

#[actix_web::test]
async fn the_public_listener_serves_it_and_the_internal_one_does_not() {
    let app = atest::init_service(App::new().configure(public_routes(state()))).await;
    let answer = atest::call_service(
        &app,
        atest::TestRequest::get().uri("/openapi.json").to_request(),
    )
    .await;
    assert_eq!(answer.status().as_u16(), 200);
    assert_eq!(
        answer.headers().get("content-type").unwrap(),
        "application/json"
    );
    let body = atest::read_body(answer).await;
    assert_eq!(std::str::from_utf8(&body).unwrap(), openapi_json().unwrap());

    let app = atest::init_service(App::new().configure(internal_routes(state()))).await;
    let answer = atest::call_service(
        &app,
        atest::TestRequest::get().uri("/openapi.json").to_request(),
    )
    .await;
    assert_eq!(answer.status().as_u16(), 404);
}

/// A path or method the document lists but no route serves would answer the
/// fallback's 404 "Not Found" or a 405.
#[actix_web::test]
async fn every_documented_operation_is_routed() {
    let doc: Value = serde_json::from_str(&openapi_json().unwrap()).unwrap();
    let app = atest::init_service(App::new().configure(routes(state()))).await;
    let mut seen = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, _) in operations(item) {
            let uri = path.replace("{user_id}", "gigi");
            let request = atest::TestRequest::default()
                .method(Method::from_bytes(method.to_uppercase().as_bytes()).unwrap())
                .uri(&uri)
                .insert_header(("authorization", "Bearer gigi-token"))
                .to_request();
            let answer = atest::call_service(&app, request).await;
            let status = answer.status().as_u16();
            let body = atest::read_body(answer).await;
            let text = String::from_utf8_lossy(&body);
            assert_ne!(status, 405, "{method} {path}: {text}");
            assert!(
                !(status == 404 && text.contains(r#""message":"Not Found""#)),
                "{method} {path} is not routed: {text}"
            );
            seen += 1;
        }
    }
    assert_eq!(seen, 17);
}
