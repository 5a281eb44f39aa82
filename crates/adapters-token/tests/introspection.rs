//! `IntrospectionVerifier` against a local stand-in for the issuer's token
//! introspection endpoint (RFC 7662).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failure is a panic"
)]

use std::sync::Arc;
use std::time::Duration;

use adapters_token::{ClientAuth, IntrospectionSettings, IntrospectionVerifier, TokenConfigError};
use application::{Principal, TokenError, TokenVerifier};
use secrecy::SecretString;
use serde_json::{Value, json};

use adapters_token::testing::idp::{
    CLIENT_ID, CLIENT_SECRET, DISCOVERY_PATH, Expect, INTROSPECT_PATH, Idp, KEY_ID, TestClock,
    active, active_at, basic, key_jwt,
};
use adapters_token::testing::*;

/// An opaque token, the kind ZITADEL issues by default.
const OPAQUE: &str = "bT7YdcRJx3Mw-7rUqUEn1AC5gkCjPGTmRtH3JmUVxPALmUbbjL0hq6Ia3KyQ8mBp";

async fn verify(verifier: &IntrospectionVerifier, token: &str) -> Result<Principal, TokenError> {
    verifier.verify(&SecretString::from(token)).await
}

fn with(mut value: Value, changes: &Value) -> Value {
    for (name, change) in changes.as_object().unwrap() {
        if change.is_null() {
            value.as_object_mut().unwrap().remove(name);
        } else {
            value[name] = change.clone();
        }
    }
    value
}

#[track_caller]
fn assert_invalid(result: Result<Principal, TokenError>, expected: &str) {
    match result {
        Err(TokenError::Invalid(reason)) => {
            assert!(
                reason.contains(expected),
                "{reason:?} should mention {expected:?}"
            );
            assert!(!reason.contains(OPAQUE), "{reason:?} leaks the token");
        }
        other => panic!("expected Invalid({expected:?}), got {other:?}"),
    }
}

#[track_caller]
fn assert_unavailable(result: Result<Principal, TokenError>, expected: &str) {
    match result {
        Err(TokenError::Unavailable(reason)) => {
            assert!(
                reason.contains(expected),
                "{reason:?} should mention {expected:?}"
            );
            assert!(!reason.contains(OPAQUE), "{reason:?} leaks the token");
        }
        other => panic!("expected Unavailable({expected:?}), got {other:?}"),
    }
}

/// The endpoint with Basic client authentication and a verifier on `clock`.
fn basic_setup(clock: &Arc<TestClock>) -> (Idp, IntrospectionVerifier) {
    let idp = Idp::start(Expect::Basic);
    let verifier = IntrospectionVerifier::with_clock(idp.settings(basic()), clock.clone()).unwrap();
    (idp, verifier)
}

#[tokio::test]
async fn an_active_token_gives_the_principal_with_its_scopes() {
    let clock = TestClock::starting_now();
    let (idp, verifier) = basic_setup(&clock);
    idp.answer(OPAQUE, &active(&idp.issuer()));

    let principal = verify(&verifier, OPAQUE).await.unwrap();
    assert_eq!(principal.user_id.as_str(), "69629023906488334");
    assert_eq!(principal.org_id.unwrap().as_str(), "69629026806489455");
    assert_eq!(
        principal.login_name.unwrap().as_str(),
        "gigi@acme.zitadel.cloud"
    );
    assert_eq!(principal.scopes, ["openid", "profile", "otp:login"]);
    assert_eq!(idp.asked(), [OPAQUE]);
    assert!(idp.refusals().is_empty(), "{:?}", idp.refusals());
}

#[tokio::test]
async fn identity_from_rfc7662_members_and_custom_claims() {
    let clock = TestClock::starting_now();
    let (idp, verifier) = basic_setup(&clock);
    // No preferred_username: RFC 7662's `username` stands in; scope as an array.
    let answer = with(
        active(&idp.issuer()),
        &json!({ "preferred_username": null, "username": "gigi", "scope": ["a", "b"], "iss": null }),
    );
    idp.answer(OPAQUE, &answer);
    let principal = verify(&verifier, OPAQUE).await.unwrap();
    assert_eq!(principal.login_name.unwrap().as_str(), "gigi");
    assert_eq!(principal.scopes, ["a", "b"]);

    let mut settings = idp.settings(basic());
    settings.claims.user_id = "uid".into();
    settings.claims.scope = "scp".into();
    let custom = IntrospectionVerifier::with_clock(settings, clock.clone()).unwrap();
    idp.answer(
        "t2",
        &with(active(&idp.issuer()), &json!({ "uid": "u-7", "scp": "x" })),
    );
    let principal = verify(&custom, "t2").await.unwrap();
    assert_eq!(principal.user_id.as_str(), "u-7");
    assert_eq!(principal.scopes, ["x"]);
}

#[tokio::test]
async fn an_inactive_token_is_invalid_and_its_rejection_remembered_briefly() {
    let clock = TestClock::starting_now();
    let (idp, verifier) = basic_setup(&clock); // rejections remembered 10 s
    idp.answer(OPAQUE, &json!({ "active": false }));
    assert_invalid(verify(&verifier, OPAQUE).await, "inactive");
    for _ in 0..5 {
        assert_invalid(verify(&verifier, OPAQUE).await, "inactive");
    }
    assert_eq!(idp.introspections(), 1, "junk sent again costs no request");

    clock.advance(10);
    assert_invalid(verify(&verifier, OPAQUE).await, "inactive");
    assert_eq!(idp.introspections(), 2, "forgotten after the TTL");

    // Unknown to the endpoint: inactive as well; an expired answer too.
    assert_invalid(verify(&verifier, "never-issued").await, "inactive");
    let expired = with(active(&idp.issuer()), &json!({ "exp": clock.secs() - 120 }));
    idp.answer("expired", &expired);
    assert_invalid(verify(&verifier, "expired").await, "expired");
    assert_invalid(verify(&verifier, "expired").await, "expired");
    assert_eq!(idp.introspections(), 4);

    // A zero TTL asks every time.
    let mut settings = idp.settings(basic());
    settings.negative_cache_ttl = Duration::ZERO;
    let uncached = IntrospectionVerifier::with_clock(settings, clock.clone()).unwrap();
    assert_invalid(verify(&uncached, OPAQUE).await, "inactive");
    assert_invalid(verify(&uncached, OPAQUE).await, "inactive");
    assert_eq!(idp.introspections(), 6);
}

#[tokio::test]
async fn introspections_beyond_the_bound_are_shed_at_once_not_queued() {
    let clock = TestClock::starting_now();
    // An endpoint that takes 1.5 s per answer (any client, any token).
    let slow = Server::start();
    let issuer = slow.issuer();
    slow.handle(INTROSPECT_PATH, move |_| {
        std::thread::sleep(Duration::from_millis(1500));
        (200, active(&issuer).to_string())
    });
    let mut settings = IntrospectionSettings::new(slow.issuer(), AUDIENCE, basic());
    settings.url = Some(format!("{}{INTROSPECT_PATH}", slow.url()));
    settings.max_concurrent = 2;
    let verifier = Arc::new(IntrospectionVerifier::with_clock(settings, clock).unwrap());

    let in_flight: Vec<_> = ["slow-1", "slow-2"]
        .into_iter()
        .map(|token| {
            let verifier = Arc::clone(&verifier);
            tokio::spawn(async move { verify(&verifier, token).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    assert_unavailable(verify(&verifier, "slow-3").await, "shedding load");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "answered at once, not after a queue: {:?}",
        started.elapsed()
    );
    for call in in_flight {
        call.await.unwrap().unwrap();
    }
    assert_eq!(
        slow.hits(INTROSPECT_PATH),
        2,
        "the shed token was never sent"
    );
    // The slots are free again; a cached token needs none.
    verify(&verifier, "slow-3").await.unwrap();
    verify(&verifier, "slow-1").await.unwrap();
    assert_eq!(slow.hits(INTROSPECT_PATH), 3);
}

#[tokio::test]
async fn the_authorized_party_must_be_allowed_when_clients_are_listed() {
    let clock = TestClock::starting_now();
    let idp = Idp::start(Expect::Basic);
    let issuer = idp.issuer();
    // `active()` names client_id `some-app`.
    idp.answer(OPAQUE, &active(&issuer));
    idp.answer(
        "by-azp",
        &with(active(&issuer), &json!({ "azp": "web-app" })),
    );
    idp.answer(
        "by-audience",
        &with(active(&issuer), &json!({ "client_id": AUDIENCE })),
    );
    let mut settings = idp.settings(basic());
    settings.allowed_clients = vec!["web-app".into()];
    let verifier = IntrospectionVerifier::with_clock(settings, clock.clone()).unwrap();
    assert_invalid(verify(&verifier, OPAQUE).await, "not an allowed client");
    verify(&verifier, "by-azp").await.unwrap();
    verify(&verifier, "by-audience").await.unwrap();

    // Without a list, any client of the audience.
    let open = IntrospectionVerifier::with_clock(idp.settings(basic()), clock).unwrap();
    verify(&open, OPAQUE).await.unwrap();
}

#[tokio::test]
async fn an_active_but_expired_token_is_invalid() {
    let clock = TestClock::starting_now();
    let (idp, verifier) = basic_setup(&clock); // leeway 30 s
    let now = clock.secs();
    let answer = with(active(&idp.issuer()), &json!({ "exp": now - 120 }));
    idp.answer(OPAQUE, &answer);
    assert_invalid(verify(&verifier, OPAQUE).await, "expired");

    // Within the leeway: accepted.
    idp.answer(
        "t2",
        &with(active(&idp.issuer()), &json!({ "exp": now - 10 })),
    );
    verify(&verifier, "t2").await.unwrap();

    idp.answer(
        "t3",
        &with(active(&idp.issuer()), &json!({ "nbf": now + 120 })),
    );
    assert_invalid(verify(&verifier, "t3").await, "nbf");

    idp.answer(
        "t4",
        &with(active(&idp.issuer()), &json!({ "exp": "tomorrow" })),
    );
    assert_invalid(verify(&verifier, "t4").await, "exp");
}

#[tokio::test]
async fn wrong_audience_or_issuer_is_invalid() {
    let clock = TestClock::starting_now();
    let (idp, verifier) = basic_setup(&clock);
    let issuer = idp.issuer();
    let cases = [
        (json!({ "aud": ["a", "b"] }), "wrong audience"),
        (json!({ "aud": "someone-else" }), "wrong audience"),
        (json!({ "aud": null }), "wrong audience"),
        (json!({ "iss": "https://evil.example" }), "wrong issuer"),
        (json!({ "sub": null }), "missing user id claim sub"),
        (json!({ "sub": 42 }), "claim sub"),
        (json!({ "scope": 42 }), "claim scope"),
    ];
    for (i, (change, expected)) in cases.into_iter().enumerate() {
        let token = format!("token-{i}");
        idp.answer(&token, &with(active(&issuer), &change));
        assert_invalid(verify(&verifier, &token).await, expected);
    }
    // A single-string audience that matches is fine.
    idp.answer("ok", &with(active(&issuer), &json!({ "aud": AUDIENCE })));
    verify(&verifier, "ok").await.unwrap();
}

#[tokio::test]
async fn an_endpoint_that_is_down_is_unavailable() {
    let clock = TestClock::starting_now();
    let idp = Idp::start(Expect::Basic);
    let mut settings = idp.settings(basic());
    settings.url = Some(format!("{}/oauth/v2/introspect?x=secret-query", dead_url()));
    let verifier = IntrospectionVerifier::with_clock(settings, clock).unwrap();
    match verify(&verifier, OPAQUE).await {
        Err(TokenError::Unavailable(reason)) => {
            assert!(reason.contains("cannot connect"), "{reason}");
            assert!(!reason.contains("secret-query"), "{reason}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn endpoint_failures_are_unavailable_and_not_cached() {
    let clock = TestClock::starting_now();
    let (idp, verifier) = basic_setup(&clock);
    let cases = [
        (500, "{}".to_owned(), "HTTP status 500"),
        (302, String::new(), "HTTP status 302"),
        (200, "<html>oops</html>".to_owned(), "not a JSON object"),
        (200, "[true]".to_owned(), "not a JSON object"),
        (
            200,
            json!({ "active": "yes" }).to_string(),
            "boolean `active`",
        ),
        (200, json!({ "sub": "u" }).to_string(), "boolean `active`"),
        (
            200,
            json!({ "active": true, "padding": "x".repeat(70 * 1024) }).to_string(),
            "too large",
        ),
    ];
    for (i, (status, body, expected)) in cases.into_iter().enumerate() {
        let token = format!("token-{i}");
        idp.respond(&token, status, &body);
        assert_unavailable(verify(&verifier, &token).await, expected);
    }

    // Fixed: the same token is asked again (the failure was not cached).
    idp.answer("token-0", &active(&idp.issuer()));
    verify(&verifier, "token-0").await.unwrap();
}

#[tokio::test]
async fn wrong_client_credentials_get_401_which_is_unavailable() {
    let clock = TestClock::starting_now();
    let idp = Idp::start(Expect::Basic);
    idp.answer(OPAQUE, &active(&idp.issuer()));
    let wrong = ClientAuth::Basic {
        client_id: CLIENT_ID.into(),
        client_secret: SecretString::from("not-the-secret"),
    };
    let verifier = IntrospectionVerifier::with_clock(idp.settings(wrong), clock).unwrap();
    assert_unavailable(verify(&verifier, OPAQUE).await, "HTTP status 401");
    assert_eq!(idp.refusals(), ["wrong Basic credentials"]);
}

#[tokio::test]
async fn a_slow_endpoint_times_out_as_unavailable() {
    let clock = TestClock::starting_now();
    let idp = Idp::start(Expect::Basic);
    idp.server.handle("/slow", |_| {
        std::thread::sleep(Duration::from_secs(2));
        (200, json!({ "active": false }).to_string())
    });
    let mut settings = idp.settings(basic());
    settings.url = Some(format!("{}/slow", idp.server.url()));
    settings.http_timeout = Duration::from_millis(300);
    let verifier = IntrospectionVerifier::with_clock(settings, clock).unwrap();
    assert_unavailable(verify(&verifier, OPAQUE).await, "timed out");
}

#[tokio::test]
async fn private_key_jwt_assertions_are_signed_and_fresh() {
    let clock = TestClock::starting_now();
    let idp = Idp::start(Expect::PrivateKeyJwt);
    idp.answer(OPAQUE, &active(&idp.issuer()));
    idp.answer("t2", &active(&idp.issuer()));
    let verifier = IntrospectionVerifier::with_clock(idp.settings(key_jwt()), clock).unwrap();
    verify(&verifier, OPAQUE).await.unwrap();
    // A second request carries a new assertion (the endpoint refuses a reused jti).
    verify(&verifier, "t2").await.unwrap();
    assert!(idp.refusals().is_empty(), "{:?}", idp.refusals());
    assert_eq!(idp.introspections(), 2);
}

#[tokio::test]
async fn a_foreign_key_or_kid_is_refused_by_the_endpoint() {
    let clock = TestClock::starting_now();
    let idp = Idp::start(Expect::PrivateKeyJwt);
    idp.answer(OPAQUE, &active(&idp.issuer()));
    let foreign = ClientAuth::PrivateKeyJwt {
        client_id: CLIENT_ID.into(),
        key_id: KEY_ID.into(),
        private_key_pem: SecretString::from(String::from_utf8(RSA2_KEY.to_vec()).unwrap()),
    };
    let verifier = IntrospectionVerifier::with_clock(idp.settings(foreign), clock.clone()).unwrap();
    assert_unavailable(verify(&verifier, OPAQUE).await, "HTTP status 401");

    let ClientAuth::PrivateKeyJwt {
        client_id,
        private_key_pem,
        ..
    } = key_jwt()
    else {
        unreachable!()
    };
    let other_kid = ClientAuth::PrivateKeyJwt {
        client_id,
        key_id: "key-2".into(),
        private_key_pem,
    };
    let verifier = IntrospectionVerifier::with_clock(idp.settings(other_kid), clock).unwrap();
    assert_unavailable(verify(&verifier, OPAQUE).await, "HTTP status 401");
    let refusals = idp.refusals();
    assert!(refusals[0].contains("InvalidSignature"), "{refusals:?}");
    assert!(refusals[1].contains("kid"), "{refusals:?}");
}

#[tokio::test]
async fn zitadel_key_file_authenticates() {
    let clock = TestClock::starting_now();
    let idp = Idp::start(Expect::PrivateKeyJwt);
    idp.answer(OPAQUE, &active(&idp.issuer()));
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/zitadel-app-key.json"
    );
    let auth = ClientAuth::from_zitadel_key_file(path).unwrap();
    let ClientAuth::PrivateKeyJwt {
        client_id, key_id, ..
    } = &auth
    else {
        panic!("expected private_key_jwt, got {auth:?}");
    };
    assert_eq!(client_id, "281749911232966672@otp-service");
    assert_eq!(key_id, "281749930203758608");

    // The endpoint here knows the client as CLIENT_ID/KEY_ID: swap the ids,
    // keep the key read from the file.
    let ClientAuth::PrivateKeyJwt {
        private_key_pem, ..
    } = auth
    else {
        unreachable!()
    };
    let auth = ClientAuth::PrivateKeyJwt {
        client_id: CLIENT_ID.into(),
        key_id: KEY_ID.into(),
        private_key_pem,
    };
    let verifier = IntrospectionVerifier::with_clock(idp.settings(auth), clock).unwrap();
    verify(&verifier, OPAQUE).await.unwrap();
    assert!(idp.refusals().is_empty(), "{:?}", idp.refusals());
}

#[test]
fn bad_key_files_are_refused_without_their_key() {
    let dir = std::env::temp_dir().join(format!("adapters-token-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret_line = "MIIEpAIBAAKCAQEAsEnTiNeLsEnTiNeLsEnTiNeL";
    let broken_key =
        format!("-----BEGIN RSA PRIVATE KEY-----\n{secret_line}\n-----END RSA PRIVATE KEY-----\n");
    let good_key = String::from_utf8(RSA1_KEY.to_vec()).unwrap();
    let cases = [
        (
            "not-json",
            "{\"key\": \"".to_owned() + secret_line,
            "not a JSON key file",
        ),
        (
            "service-account",
            json!({"type": "serviceaccount", "keyId": "k", "key": good_key, "userId": "u"})
                .to_string(),
            "service account",
        ),
        (
            "no-client-id",
            json!({"type": "application", "keyId": "k", "key": good_key}).to_string(),
            "clientId",
        ),
        (
            "no-key",
            json!({"type": "application", "keyId": "k", "clientId": "c"}).to_string(),
            "\"key\" is missing",
        ),
        (
            "broken-key",
            json!({"type": "application", "keyId": "k", "key": broken_key, "clientId": "c"})
                .to_string(),
            "not an RSA private key",
        ),
        (
            "key-type-mismatch",
            json!({"type": "application", "keyId": "k", "key": 7, "clientId": secret_line})
                .to_string(),
            "not a JSON key file",
        ),
    ];
    for (name, content, expected) in cases {
        let path = dir.join(format!("{name}.json"));
        std::fs::write(&path, content).unwrap();
        match ClientAuth::from_zitadel_key_file(&path) {
            Err(TokenConfigError::Key(message)) => {
                assert!(message.contains(expected), "{name}: {message}");
                assert!(
                    message.contains(&*path.to_string_lossy()),
                    "{name}: {message}"
                );
                assert!(!message.contains(secret_line), "{name} leaks: {message}");
                assert!(!message.contains("MII"), "{name} leaks: {message}");
            }
            other => panic!("{name}: expected Key error, got {other:?}"),
        }
    }
    match ClientAuth::from_zitadel_key_file(dir.join("missing.json")) {
        Err(TokenConfigError::Key(message)) => {
            assert!(message.contains("cannot read"), "{message}")
        }
        other => panic!("expected Key error, got {other:?}"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn the_endpoint_is_discovered_once() {
    let clock = TestClock::starting_now();
    let idp = Idp::start(Expect::Basic);
    idp.answer(OPAQUE, &active(&idp.issuer()));
    idp.answer("t2", &active(&idp.issuer()));
    let mut settings = idp.settings(basic());
    settings.url = None;
    settings.issuer = format!("{}/", idp.issuer());
    // With the trailing slash, the issuer differs from the answers' `iss`.
    // The discovery document names the issuer without it: not the configured
    // issuer (OpenID Connect Discovery §4.3), so its endpoint is not used.
    let verifier = IntrospectionVerifier::with_clock(settings, clock.clone()).unwrap();
    assert_unavailable(verify(&verifier, OPAQUE).await, "not the configured issuer");
    assert_eq!(idp.server.hits(DISCOVERY_PATH), 1);
    assert_eq!(idp.server.hits(INTROSPECT_PATH), 0);

    let mut settings = idp.settings(basic());
    settings.url = None;
    let verifier = IntrospectionVerifier::with_clock(settings, clock).unwrap();
    verify(&verifier, OPAQUE).await.unwrap();
    verify(&verifier, "t2").await.unwrap();
    assert_eq!(idp.server.hits(DISCOVERY_PATH), 2);
    assert_eq!(idp.server.hits(INTROSPECT_PATH), 2);
}

#[tokio::test]
async fn failed_discovery_is_unavailable_and_retried() {
    let clock = TestClock::starting_now();
    let idp = Idp::start(Expect::Basic);
    idp.answer(OPAQUE, &active(&idp.issuer()));
    idp.server.set(
        DISCOVERY_PATH,
        200,
        &json!({ "issuer": idp.issuer() }).to_string(),
    );
    let mut settings = idp.settings(basic());
    settings.url = None;
    let verifier = IntrospectionVerifier::with_clock(settings, clock).unwrap();
    assert_unavailable(verify(&verifier, OPAQUE).await, "no introspection_endpoint");

    let doc = json!({ "issuer": idp.issuer(), "introspection_endpoint": idp.endpoint() });
    idp.server.set(DISCOVERY_PATH, 200, &doc.to_string());
    verify(&verifier, OPAQUE).await.unwrap();
    assert_eq!(idp.server.hits(DISCOVERY_PATH), 2);
}

#[tokio::test]
async fn an_active_answer_is_cached_until_the_ttl() {
    let clock = TestClock::starting_now();
    let (idp, verifier) = basic_setup(&clock); // cache TTL 30 s
    idp.answer(OPAQUE, &active(&idp.issuer())); // exp in 300 s
    let first = verify(&verifier, OPAQUE).await.unwrap();
    let second = verify(&verifier, OPAQUE).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(idp.introspections(), 1);

    // Revoked at the issuer: still served from the cache within the TTL ...
    idp.answer(OPAQUE, &json!({ "active": false }));
    clock.advance(29);
    verify(&verifier, OPAQUE).await.unwrap();
    assert_eq!(idp.introspections(), 1);
    // ... and asked again once it has passed.
    clock.advance(2);
    assert_invalid(verify(&verifier, OPAQUE).await, "inactive");
    assert_eq!(idp.introspections(), 2);
}

#[tokio::test]
async fn a_cached_answer_is_not_used_after_the_token_expires() {
    let clock = TestClock::starting_now();
    let idp = Idp::start(Expect::Basic);
    let mut settings = idp.settings(basic());
    settings.leeway = Duration::ZERO;
    settings.cache_ttl = Duration::from_secs(600);
    let verifier = IntrospectionVerifier::with_clock(settings, clock.clone()).unwrap();
    let exp = clock.secs() + 10;
    idp.answer(OPAQUE, &with(active(&idp.issuer()), &json!({ "exp": exp })));
    verify(&verifier, OPAQUE).await.unwrap();
    clock.advance(9);
    verify(&verifier, OPAQUE).await.unwrap();
    assert_eq!(idp.introspections(), 1);

    clock.advance(2); // past exp, well within the TTL
    assert_invalid(verify(&verifier, OPAQUE).await, "expired");
    assert_eq!(idp.introspections(), 2);
}

#[tokio::test]
async fn a_zero_ttl_disables_the_cache() {
    let clock = TestClock::starting_now();
    let idp = Idp::start(Expect::Basic);
    let mut settings = idp.settings(basic());
    settings.cache_ttl = Duration::ZERO;
    let verifier = IntrospectionVerifier::with_clock(settings, clock.clone()).unwrap();
    idp.answer(OPAQUE, &active_at(&idp.issuer(), clock.secs()));
    verify(&verifier, OPAQUE).await.unwrap();
    verify(&verifier, OPAQUE).await.unwrap();
    assert_eq!(idp.introspections(), 2);
}

#[tokio::test]
async fn empty_and_oversized_tokens_are_refused_without_a_request() {
    let clock = TestClock::starting_now();
    let (idp, verifier) = basic_setup(&clock);
    assert_invalid(verify(&verifier, "").await, "empty");
    assert_invalid(verify(&verifier, &"x".repeat(17 * 1024)).await, "16 KiB");
    assert_eq!(idp.introspections(), 0);
}

#[test]
fn debug_shows_no_secrets() {
    let idp = Idp::start(Expect::Basic);
    let settings = idp.settings(basic());
    let text = format!("{settings:?}");
    assert!(text.contains(CLIENT_ID), "{text}");
    assert!(!text.contains(CLIENT_SECRET), "{text}");
    let verifier = IntrospectionVerifier::new(settings).unwrap();
    let text = format!("{verifier:?}");
    assert!(text.contains(CLIENT_ID), "{text}");
    assert!(!text.contains(CLIENT_SECRET), "{text}");
    assert!(!text.contains("s3cr3t"), "{text}");

    let key = key_jwt();
    let text = format!("{key:?}");
    assert!(text.contains(KEY_ID), "{text}");
    assert!(
        !text.contains("PRIVATE KEY") && !text.contains("MII"),
        "{text}"
    );
    let verifier = IntrospectionVerifier::new(idp.settings(key)).unwrap();
    let text = format!("{verifier:?}");
    assert!(
        !text.contains("PRIVATE KEY") && !text.contains("MII"),
        "{text}"
    );
}

#[test]
fn bad_settings_are_refused() {
    let idp = Idp::start(Expect::Basic);
    let refused = |change: &dyn Fn(&mut IntrospectionSettings), kind: &str| {
        let mut settings = idp.settings(basic());
        change(&mut settings);
        match (IntrospectionVerifier::new(settings), kind) {
            (Err(TokenConfigError::InvalidSetting(_)), "setting")
            | (Err(TokenConfigError::Key(_)), "key") => {}
            (other, _) => panic!("expected a {kind} error, got {other:?}"),
        }
    };
    refused(&|s| s.issuer = String::new(), "setting");
    refused(&|s| s.audience = " ".into(), "setting");
    refused(
        &|s| s.url = Some("ftp://example.com/introspect".into()),
        "setting",
    );
    refused(
        &|s| {
            s.url = None;
            s.issuer = "not a url".into();
        },
        "setting",
    );
    refused(&|s| s.claims.scope = String::new(), "setting");
    refused(&|s| s.max_concurrent = 0, "setting");
    refused(
        &|s| s.url = Some("http://issuer.example/introspect".into()),
        "setting",
    );
    refused(
        &|s| {
            s.url = None;
            s.issuer = "http://issuer.example".into();
        },
        "setting",
    );
    refused(&|s| s.http_timeout = Duration::ZERO, "setting");
    refused(
        &|s| {
            s.client_auth = ClientAuth::Basic {
                client_id: CLIENT_ID.into(),
                client_secret: SecretString::from(""),
            }
        },
        "setting",
    );
    refused(
        &|s| {
            s.client_auth = ClientAuth::PrivateKeyJwt {
                client_id: CLIENT_ID.into(),
                key_id: KEY_ID.into(),
                private_key_pem: SecretString::from(String::from_utf8(RSA1_PUB.to_vec()).unwrap()),
            }
        },
        "key",
    );
}

#[test]
fn defaults() {
    let settings = IntrospectionSettings::new("https://issuer.example", AUDIENCE, basic());
    assert_eq!(settings.url, None);
    assert_eq!(settings.leeway, Duration::from_secs(30));
    assert_eq!(settings.cache_ttl, Duration::from_secs(30));
    assert_eq!(settings.cache_capacity, 10_000);
    assert_eq!(settings.http_timeout, Duration::from_secs(10));
    assert_eq!(settings.negative_cache_ttl, Duration::from_secs(10));
    assert_eq!(settings.max_concurrent, 32);
    assert!(settings.allowed_clients.is_empty());
    assert!(!settings.allow_http);
    assert_eq!(settings.claims.scope, "scope");
    assert_eq!(settings.claims.login_name, "preferred_username");
}
