//! docs/api.md, section 6: every way a token can be wrong, on every endpoint.

use data_encoding::BASE64URL_NOPAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{
    KID, OTP, PUBLIC_PEM, SEARCH, TestApp, VERIFY, claims, sign, spawn_app, user,
};

fn b64(value: &Value) -> String {
    BASE64URL_NOPAD.encode(value.to_string().as_bytes())
}

/// The Authorization headers that must all be refused, by name.
fn bad_headers(app: &TestApp, sub: &str) -> Vec<(&'static str, String)> {
    let valid = claims(&app.issuer.url, sub);
    let with = |key: &str, value: Value| {
        let mut claims = valid.clone();
        claims[key] = value;
        claims
    };
    let now = chrono::Utc::now().timestamp();
    let good = sign(&valid);
    let parts: Vec<&str> = good.split('.').collect();

    let mut hs256 = Header::new(Algorithm::HS256);
    hs256.kid = Some(KID.into());
    let hs256 = jsonwebtoken::encode(
        &hs256,
        &valid,
        &EncodingKey::from_secret(PUBLIC_PEM.as_bytes()).unwrap(),
    )
    .unwrap();
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": KID})),
        b64(&valid)
    );
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(&with("sub", json!("someone-else"))),
        parts[2]
    );
    let mut unknown_kid = Header::new(Algorithm::RS256);
    unknown_kid.kid = Some("not-a-served-key".into());
    let unknown_kid = jsonwebtoken::encode(
        &unknown_kid,
        &valid,
        &EncodingKey::from_rsa_pem(crate::helpers::PRIVATE_PEM.as_bytes()).unwrap(),
    )
    .unwrap();

    vec![
        (
            "not Bearer",
            format!("Basic {}", BASE64URL_NOPAD.encode(b"gigi:pw")),
        ),
        ("no scheme", good.clone()),
        ("empty bearer", "Bearer ".into()),
        ("garbage", "Bearer garbage".into()),
        (
            "expired",
            format!("Bearer {}", sign(&with("exp", json!(now - 3600)))),
        ),
        (
            "not yet valid",
            format!("Bearer {}", sign(&with("nbf", json!(now + 3600)))),
        ),
        (
            "wrong iss",
            format!(
                "Bearer {}",
                sign(&with("iss", json!("https://evil.example.com")))
            ),
        ),
        (
            "wrong aud",
            format!("Bearer {}", sign(&with("aud", json!("someone-else")))),
        ),
        ("alg none", format!("Bearer {none}")),
        ("HS256 with the public key", format!("Bearer {hs256}")),
        ("tampered payload", format!("Bearer {tampered}")),
        ("unknown kid", format!("Bearer {unknown_kid}")),
        (
            "no sub",
            format!("Bearer {}", sign(&with("sub", json!(null)))),
        ),
    ]
}

async fn call_each_endpoint(app: &TestApp, auth: Option<&str>) -> Vec<crate::helpers::Answer> {
    let mut answers = Vec::new();
    for (method, path, body) in [
        (Method::POST, OTP, Some("{}")),
        (Method::POST, VERIFY, Some(r#"{"code":"123456"}"#)),
        (Method::DELETE, OTP, None),
        (Method::POST, SEARCH, Some("{}")),
    ] {
        answers.push(app.call(method, path, auth, body.map(str::to_owned)).await);
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_authorization_header_is_401_auth_header_missing() {
    let Some(app) = spawn_app().await else { return };
    for answer in call_each_endpoint(&app, None).await {
        assert_eq!(answer.status, 401);
        assert_eq!(
            answer.body,
            json!({"code": 16, "message": "auth header missing"})
        );
        assert!(answer.www_authenticate.unwrap().starts_with("Bearer"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_invalid_token_is_401_errors_token_invalid_and_changes_nothing() {
    let Some(app) = spawn_app().await else { return };
    let sub = user("victim");
    let victim = app.token(&sub);
    assert_eq!(app.add(&victim).await.status, 200);

    for (name, header) in bad_headers(&app, &sub) {
        for answer in call_each_endpoint(&app, Some(&header)).await {
            assert_eq!(answer.status, 401, "{name}: {}", answer.body);
            assert_eq!(answer.body["code"], 16, "{name}");
            assert_eq!(
                answer.body["message"], "Errors.Token.Invalid (AUTH-7fs1e)",
                "{name}"
            );
            assert_eq!(answer.body["details"][0]["id"], "AUTH-7fs1e", "{name}");
            assert!(answer.www_authenticate.is_some(), "{name}");
        }
    }
    // The victim's pending factor is untouched: the next change is sequence 2.
    assert_eq!(app.add(&victim).await.body["details"]["sequence"], "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_fetched_once_and_unknown_kids_do_not_hammer_the_issuer() {
    let Some(app) = spawn_app().await else { return };
    let token = app.token(&user("cache"));
    for _ in 0..5 {
        assert_eq!(app.list(&token).await.status, 200);
    }
    let after_valid = app.issuer.jwks_hits();
    assert_eq!(after_valid, 1, "the key set is cached");
    let unknown = bad_headers(&app, "x")
        .into_iter()
        .find(|(name, _)| *name == "unknown kid")
        .unwrap()
        .1;
    for _ in 0..10 {
        assert_eq!(
            app.call(Method::POST, SEARCH, Some(&unknown), None)
                .await
                .status,
            401
        );
    }
    let after_unknown = app.issuer.jwks_hits();
    assert!(
        after_unknown <= 2,
        "refetches are rate-limited: {after_unknown} fetches"
    );
}
