//! `JwtVerifier::with_verified_cache`: a verified token is remembered by
//! its hash, until its `exp` or the maximum age, and a bounded number of them.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failure is a panic"
)]

use std::time::Duration;

use adapters_token::JwtVerifier;
use application::{Principal, TokenError, TokenVerifier};
use jsonwebtoken::Algorithm;
use secrecy::SecretString;
use serde_json::{Value, json};

use adapters_token::testing::*;

async fn verify(verifier: &JwtVerifier, token: &str) -> Result<Principal, TokenError> {
    verifier.verify(&SecretString::from(token)).await
}

fn with(mut claims: Value, changes: &Value) -> Value {
    for (name, value) in changes.as_object().unwrap() {
        claims[name] = value.clone();
    }
    claims
}

#[track_caller]
fn assert_invalid(result: Result<Principal, TokenError>, expected: &str) {
    match result {
        Err(TokenError::Invalid(reason)) => assert!(
            reason.contains(expected),
            "reason {reason:?} should mention {expected:?}"
        ),
        other => panic!("expected Invalid({expected:?}), got {other:?}"),
    }
}

fn server() -> Server {
    Server::issuer_with(&jwks(&[jwk(RSA1_JWK, "k1", Some("RS256"))]))
}

/// Retires `k1` at the issuer and makes the verifier learn it, by sending a
/// token signed with the new key `k2` (an unknown kid refetches the set).
async fn retire_k1(server: &Server, verifier: &JwtVerifier) {
    server.set_jwks(&jwks(&[jwk(RSA2_JWK, "k2", Some("RS256"))]));
    tokio::time::sleep(Duration::from_millis(60)).await;
    let new = sign_with(
        RSA2_KEY,
        Algorithm::RS256,
        Some("k2"),
        &claims(&server.issuer()),
    );
    verify(verifier, &new).await.unwrap();
    assert_eq!(server.hits("/jwks"), 2, "the key set was fetched again");
}

#[tokio::test]
async fn a_remembered_token_skips_the_check_until_max_age() {
    let server = server();
    let mut settings = server.settings();
    settings.min_refresh_interval = Duration::from_millis(50);
    let verifier = JwtVerifier::new(settings)
        .unwrap()
        .with_verified_cache(100, Duration::from_millis(1500));
    let old = sign(Some("k1"), &claims(&server.issuer()));
    verify(&verifier, &old).await.unwrap();

    retire_k1(&server, &verifier).await;
    // Remembered: accepted without its (now unknown) key being looked up.
    let principal = verify(&verifier, &old).await.unwrap();
    assert_eq!(principal.user_id.as_str(), "69629023906488334");
    // A token never seen before, signed with the retired key, is checked.
    let unseen = sign(
        Some("k1"),
        &with(claims(&server.issuer()), &json!({ "sub": "another-user" })),
    );
    assert_invalid(verify(&verifier, &unseen).await, "unknown kid");

    // After the maximum age the remembered token is checked again.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_invalid(verify(&verifier, &old).await, "unknown kid");
}

#[tokio::test]
async fn without_the_cache_a_retired_key_fails_at_once() {
    let server = server();
    let mut settings = server.settings();
    settings.min_refresh_interval = Duration::from_millis(50);
    let verifier = JwtVerifier::new(settings)
        .unwrap()
        .with_verified_cache(0, Duration::from_secs(60));
    let old = sign(Some("k1"), &claims(&server.issuer()));
    verify(&verifier, &old).await.unwrap();
    retire_k1(&server, &verifier).await;
    assert_invalid(verify(&verifier, &old).await, "unknown kid");
}

#[tokio::test]
async fn a_remembered_token_ends_at_its_exp() {
    let server = server();
    let mut settings = server.settings();
    settings.leeway = Duration::ZERO;
    let verifier = JwtVerifier::new(settings)
        .unwrap()
        .with_verified_cache(100, Duration::from_secs(300));
    let exp = now() + 2;
    let token = sign(
        Some("k1"),
        &with(claims(&server.issuer()), &json!({ "exp": exp })),
    );
    verify(&verifier, &token).await.unwrap();
    verify(&verifier, &token).await.unwrap();
    // Past exp (whole seconds): expired, although max age is far away.
    while now() <= exp {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_invalid(verify(&verifier, &token).await, "expired");
}

#[tokio::test]
async fn each_token_gets_its_own_principal() {
    let server = server();
    let verifier = JwtVerifier::new(server.settings())
        .unwrap()
        .with_verified_cache(100, Duration::from_secs(60));
    let issuer = server.issuer();
    let a = sign(
        Some("k1"),
        &with(claims(&issuer), &json!({ "sub": "user-a" })),
    );
    let b = sign(
        Some("k1"),
        &with(claims(&issuer), &json!({ "sub": "user-b" })),
    );
    for _ in 0..2 {
        assert_eq!(
            verify(&verifier, &a).await.unwrap().user_id.as_str(),
            "user-a"
        );
        assert_eq!(
            verify(&verifier, &b).await.unwrap().user_id.as_str(),
            "user-b"
        );
    }
    // A rejected token is never remembered, and neither is its tampered twin.
    let tampered = format!("{}x", &a[..a.len() - 1]);
    for _ in 0..2 {
        assert!(verify(&verifier, &tampered).await.is_err());
    }
}

#[tokio::test]
async fn the_cache_is_bounded_and_its_debug_shows_no_token() {
    let server = server();
    let verifier = JwtVerifier::new(server.settings())
        .unwrap()
        .with_verified_cache(3, Duration::from_secs(60));
    let issuer = server.issuer();
    let mut tokens = Vec::new();
    for i in 0..8 {
        let token = sign(
            Some("k1"),
            &with(claims(&issuer), &json!({ "sub": format!("user-{i}") })),
        );
        verify(&verifier, &token).await.unwrap();
        let debug = format!("{verifier:?}");
        let count: usize = debug
            .split("cached_tokens: ")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .expect("Debug shows the cached token count");
        assert!(count <= 3, "{count} tokens cached, capacity 3");
        tokens.push(token);
    }
    let debug = format!("{verifier:?}");
    for token in &tokens {
        for part in token.split('.') {
            assert!(!debug.contains(part), "Debug leaks a token");
        }
    }
}
