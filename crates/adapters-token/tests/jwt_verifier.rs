//! `JwtVerifier` against a local stand-in issuer serving discovery and JWKS.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failure is a panic"
)]

use std::sync::Arc;
use std::time::Duration;

use adapters_token::{ClaimNames, JwtVerifier, TokenConfigError};
use application::{Principal, TokenError, TokenVerifier};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::SecretString;
use serde_json::{Value, json};

use adapters_token::testing::*;

async fn verify(verifier: &JwtVerifier, token: &str) -> Result<Principal, TokenError> {
    verifier.verify(&SecretString::from(token)).await
}

/// Rejected as invalid, for a reason containing `expected`, and the reason
/// carries no part of the token.
#[track_caller]
fn assert_invalid(result: Result<Principal, TokenError>, token: &str, expected: &str) {
    match result {
        Err(TokenError::Invalid(reason)) => {
            assert!(
                reason.contains(expected),
                "reason {reason:?} should mention {expected:?}"
            );
            for part in token.split('.').filter(|part| part.len() >= 8) {
                assert!(!reason.contains(part), "reason {reason:?} leaks the token");
            }
        }
        other => panic!("expected Invalid({expected:?}), got {other:?}"),
    }
}

fn one_key_server() -> Server {
    Server::issuer_with(&jwks(&[jwk(RSA1_JWK, "k1", Some("RS256"))]))
}

fn verifier_for(server: &Server) -> JwtVerifier {
    JwtVerifier::new(server.settings()).unwrap()
}

fn with(mut claims: Value, changes: &Value) -> Value {
    for (name, value) in changes.as_object().unwrap() {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(name);
        } else {
            claims[name] = value.clone();
        }
    }
    claims
}

/// A token with a hand-made header (and claims), signature `signature`.
fn hand_made(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

#[tokio::test]
async fn valid_token_gives_the_principal_and_keys_are_cached() {
    let server = one_key_server();
    let verifier = verifier_for(&server);
    let token = sign(Some("k1"), &claims(&server.issuer()));

    let principal = verify(&verifier, &token).await.unwrap();
    assert_eq!(principal.user_id.as_str(), "69629023906488334");
    assert_eq!(
        principal.org_id.as_ref().map(|o| o.as_str()),
        Some("69629026806489455")
    );
    assert_eq!(
        principal.login_name.as_ref().map(|l| l.as_str()),
        Some("gigi@acme.zitadel.cloud")
    );

    verify(&verifier, &token).await.unwrap();
    assert_eq!(server.hits("/.well-known/openid-configuration"), 1);
    assert_eq!(server.hits("/jwks"), 1);
}

#[tokio::test]
async fn issuer_with_trailing_slash_discovers_at_the_right_path() {
    let server = one_key_server();
    let issuer = format!("{}/", server.issuer());
    // The document names the issuer exactly as configured, slash included.
    let doc = json!({ "issuer": issuer, "jwks_uri": format!("{}/jwks", server.url()) });
    server.set("/.well-known/openid-configuration", 200, &doc.to_string());
    let mut settings = server.settings();
    settings.issuer.clone_from(&issuer);
    let verifier = JwtVerifier::new(settings).unwrap();
    let token = sign(Some("k1"), &claims(&issuer));
    verify(&verifier, &token).await.unwrap();
    assert_eq!(server.hits("/.well-known/openid-configuration"), 1);
}

#[tokio::test]
async fn absent_org_and_login_name_are_none() {
    let server = one_key_server();
    let verifier = verifier_for(&server);
    let claims = with(
        claims(&server.issuer()),
        &json!({ ORG_CLAIM: null, "preferred_username": null }),
    );
    let principal = verify(&verifier, &sign(Some("k1"), &claims)).await.unwrap();
    assert_eq!(principal.user_id.as_str(), "69629023906488334");
    assert_eq!(principal.org_id, None);
    assert_eq!(principal.login_name, None);
    assert_eq!(principal.account(), "69629023906488334");
}

#[tokio::test]
async fn custom_claim_names() {
    let server = one_key_server();
    let mut settings = server.settings();
    settings.claims = ClaimNames {
        user_id: "uid".into(),
        org_id: "tenant".into(),
        login_name: "email".into(),
        scope: "scp".into(),
        roles: "realm_access.roles".into(),
    };
    let verifier = JwtVerifier::new(settings).unwrap();
    let claims = with(
        claims(&server.issuer()),
        &json!({ "uid": "u-7", "tenant": "t-1", "email": "a@b.c", "scp": ["otp:login"], "scope": "ignored",
            "realm_access": {"roles": ["otp.admin"]} }),
    );
    let principal = verify(&verifier, &sign(Some("k1"), &claims)).await.unwrap();
    assert_eq!(principal.user_id.as_str(), "u-7");
    assert_eq!(principal.org_id.unwrap().as_str(), "t-1");
    assert_eq!(principal.login_name.unwrap().as_str(), "a@b.c");
    assert_eq!(principal.scopes, ["otp:login"]);

    // `sub` is not the user id claim any more: without `uid`, the token fails.
    let claims = with(claims, &json!({ "uid": null }));
    let token = sign(Some("k1"), &claims);
    assert_invalid(
        verify(&verifier, &token).await,
        &token,
        "missing user id claim uid",
    );
}

#[tokio::test]
async fn scopes_come_from_a_space_separated_string_or_an_array() {
    let server = one_key_server();
    let verifier = verifier_for(&server);
    let issuer = server.issuer();

    let spaced = with(
        claims(&issuer),
        &json!({ "scope": "openid profile  urn:zitadel:iam:org:project:id:zitadel:aud" }),
    );
    let principal = verify(&verifier, &sign(Some("k1"), &spaced)).await.unwrap();
    assert_eq!(
        principal.scopes,
        [
            "openid",
            "profile",
            "urn:zitadel:iam:org:project:id:zitadel:aud"
        ]
    );
    assert!(principal.has_scope("profile"));

    let listed = with(
        claims(&issuer),
        &json!({ "scope": ["openid", "otp:login"] }),
    );
    let principal = verify(&verifier, &sign(Some("k1"), &listed)).await.unwrap();
    assert_eq!(principal.scopes, ["openid", "otp:login"]);

    let none = verify(&verifier, &sign(Some("k1"), &claims(&issuer)))
        .await
        .unwrap();
    assert!(none.scopes.is_empty());

    for bad in [json!(42), json!({ "openid": true }), json!(["openid", 7])] {
        let token = sign(Some("k1"), &with(claims(&issuer), &json!({ "scope": bad })));
        assert_invalid(verify(&verifier, &token).await, &token, "claim scope");
    }
}

#[tokio::test]
async fn audience_as_array() {
    let server = one_key_server();
    let verifier = verifier_for(&server);
    let good = with(
        claims(&server.issuer()),
        &json!({ "aud": ["someone-else", AUDIENCE] }),
    );
    verify(&verifier, &sign(Some("k1"), &good)).await.unwrap();

    let bad = with(claims(&server.issuer()), &json!({ "aud": ["a", "b"] }));
    let token = sign(Some("k1"), &bad);
    assert_invalid(verify(&verifier, &token).await, &token, "wrong audience");
}

#[tokio::test]
async fn time_claims_with_leeway() {
    let server = one_key_server();
    let verifier = verifier_for(&server); // leeway 30 s
    let issuer = server.issuer();
    let now = now();

    let expired = sign(
        Some("k1"),
        &with(claims(&issuer), &json!({ "exp": now - 120 })),
    );
    assert_invalid(verify(&verifier, &expired).await, &expired, "expired");

    let just_expired = sign(
        Some("k1"),
        &with(claims(&issuer), &json!({ "exp": now - 10 })),
    );
    verify(&verifier, &just_expired).await.unwrap();

    let future = sign(
        Some("k1"),
        &with(claims(&issuer), &json!({ "nbf": now + 120 })),
    );
    assert_invalid(verify(&verifier, &future).await, &future, "nbf");

    let almost = sign(
        Some("k1"),
        &with(claims(&issuer), &json!({ "nbf": now + 10 })),
    );
    verify(&verifier, &almost).await.unwrap();

    let no_exp = sign(Some("k1"), &with(claims(&issuer), &json!({ "exp": null })));
    assert_invalid(
        verify(&verifier, &no_exp).await,
        &no_exp,
        "missing claim exp",
    );

    let text_exp = sign(
        Some("k1"),
        &with(claims(&issuer), &json!({ "exp": "tomorrow" })),
    );
    assert_invalid(verify(&verifier, &text_exp).await, &text_exp, "exp");
}

#[tokio::test]
async fn wrong_or_missing_issuer_and_audience() {
    let server = one_key_server();
    let verifier = verifier_for(&server);
    let issuer = server.issuer();
    let cases = [
        (json!({ "iss": "https://evil.example" }), "wrong issuer"),
        (json!({ "iss": format!("{issuer}/") }), "wrong issuer"),
        (json!({ "iss": [issuer.clone()] }), "wrong issuer"),
        (json!({ "iss": null }), "missing claim iss"),
        (json!({ "aud": "someone-else" }), "wrong audience"),
        (json!({ "aud": null }), "missing claim aud"),
    ];
    for (change, expected) in cases {
        let token = sign(Some("k1"), &with(claims(&issuer), &change));
        assert_invalid(verify(&verifier, &token).await, &token, expected);
    }
}

#[tokio::test]
async fn alg_none_is_rejected() {
    let server = one_key_server();
    let verifier = verifier_for(&server);
    let claims = claims(&server.issuer());
    for alg in ["none", "None", "NONE"] {
        let token = hand_made(
            &json!({ "alg": alg, "typ": "JWT", "kid": "k1" }),
            &claims,
            "",
        );
        assert_invalid(
            verify(&verifier, &token).await,
            &token,
            "algorithm not allowed",
        );
    }
    // Not even with a signature that is valid for the same content under RS256.
    let good = sign(Some("k1"), &claims);
    let signature = good.rsplit('.').next().unwrap();
    let token = hand_made(&json!({ "alg": "none", "kid": "k1" }), &claims, signature);
    assert_invalid(
        verify(&verifier, &token).await,
        &token,
        "algorithm not allowed",
    );
    assert_eq!(server.hits("/jwks"), 0, "refused before looking for keys");
}

#[tokio::test]
async fn hmac_signed_with_the_public_key_is_rejected() {
    let server = one_key_server();
    let verifier = verifier_for(&server);
    let claims = claims(&server.issuer());
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let mut header = Header::new(alg);
        header.kid = Some("k1".into());
        let token = jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_secret(RSA1_PUB).unwrap(),
        )
        .unwrap();
        assert_invalid(
            verify(&verifier, &token).await,
            &token,
            "algorithm not allowed",
        );
    }
}

#[tokio::test]
async fn a_symmetric_key_in_the_jwks_is_never_used() {
    let secret = b"a shared secret of thirty-two by";
    let server = Server::issuer_with(&jwks(&[
        jwk(RSA1_JWK, "k1", Some("RS256")),
        json!({ "kty": "oct", "kid": "hmac", "alg": "HS256", "k": b64(secret) }),
    ]));
    let verifier = verifier_for(&server);
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("hmac".into());
    let token = jsonwebtoken::encode(
        &header,
        &claims(&server.issuer()),
        &EncodingKey::from_secret(secret).unwrap(),
    )
    .unwrap();
    assert_invalid(
        verify(&verifier, &token).await,
        &token,
        "algorithm not allowed",
    );

    // An RS256 token naming the oct key's kid finds no key either.
    let token = sign(Some("hmac"), &claims(&server.issuer()));
    assert_invalid(verify(&verifier, &token).await, &token, "unknown kid");
}

#[tokio::test]
async fn header_alg_must_fit_the_key() {
    // The JWK states RS256: a PS256 token with the same key is refused.
    let server = one_key_server();
    let verifier = verifier_for(&server);
    let claims = claims(&server.issuer());
    let ps256 = sign_with(RSA1_KEY, Algorithm::PS256, Some("k1"), &claims);
    assert_invalid(
        verify(&verifier, &ps256).await,
        &ps256,
        "does not match the key",
    );

    // An EC or EdDSA header against an RSA key is refused as well.
    for alg in ["ES256", "EdDSA"] {
        let token = hand_made(&json!({ "alg": alg, "kid": "k1" }), &claims, "c2lnbmF0dXJl");
        assert_invalid(
            verify(&verifier, &token).await,
            &token,
            "does not match the key",
        );
    }

    // Without `alg` in the JWK, any RSA algorithm allowed fits.
    let server = Server::issuer_with(&jwks(&[jwk(RSA1_JWK, "k1", None)]));
    let verifier = JwtVerifier::new(server.settings()).unwrap();
    let claims = adapters_token::testing::claims(&server.issuer());
    for alg in [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
    ] {
        let token = sign_with(RSA1_KEY, alg, Some("k1"), &claims);
        verify(&verifier, &token).await.unwrap();
    }
    // PS384 and PS512 are not on the list.
    let token = sign_with(RSA1_KEY, Algorithm::PS512, Some("k1"), &claims);
    assert_invalid(
        verify(&verifier, &token).await,
        &token,
        "algorithm not allowed",
    );
}

#[tokio::test]
async fn tampered_payload_and_foreign_signature_are_rejected() {
    let server = one_key_server();
    let verifier = verifier_for(&server);
    let token = sign(Some("k1"), &claims(&server.issuer()));
    verify(&verifier, &token).await.unwrap();

    let parts: Vec<&str> = token.split('.').collect();
    let payload = data_encoding::BASE64URL_NOPAD
        .decode(parts[1].as_bytes())
        .unwrap();
    let mut payload: Value = serde_json::from_slice(&payload).unwrap();
    payload["sub"] = "attacker".into();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(payload.to_string().as_bytes()),
        parts[2]
    );
    assert_invalid(
        verify(&verifier, &tampered).await,
        &tampered,
        "bad signature",
    );

    // Signed by another key, but claiming kid k1.
    let foreign = sign_with(
        RSA2_KEY,
        Algorithm::RS256,
        Some("k1"),
        &claims(&server.issuer()),
    );
    assert_invalid(verify(&verifier, &foreign).await, &foreign, "bad signature");

    // A signature that is not base64url at all.
    let broken = format!("{}.{}.!!!", parts[0], parts[1]);
    assert_invalid(verify(&verifier, &broken).await, &broken, "malformed");
}

#[tokio::test]
async fn unknown_kid_refetches_at_most_once_per_interval() {
    let server = one_key_server();
    let mut settings = server.settings();
    settings.min_refresh_interval = Duration::from_millis(400);
    let verifier = JwtVerifier::new(settings).unwrap();
    let claims = claims(&server.issuer());

    verify(&verifier, &sign(Some("k1"), &claims)).await.unwrap();
    assert_eq!(server.hits("/jwks"), 1);

    let unknown = sign_with(RSA2_KEY, Algorithm::RS256, Some("k2"), &claims);
    // Right after the first fetch: rate limited, no request.
    assert_invalid(verify(&verifier, &unknown).await, &unknown, "unknown kid");
    assert_eq!(server.hits("/jwks"), 1);

    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_invalid(verify(&verifier, &unknown).await, &unknown, "unknown kid");
    assert_eq!(server.hits("/jwks"), 2, "asked again after the interval");
    for _ in 0..5 {
        assert_invalid(verify(&verifier, &unknown).await, &unknown, "unknown kid");
    }
    assert_eq!(server.hits("/jwks"), 2, "not more than once per interval");
    // Discovery happened once; refreshes reuse the discovered URL.
    assert_eq!(server.hits("/.well-known/openid-configuration"), 1);

    // Known keys keep working while unknown kids are refused.
    verify(&verifier, &sign(Some("k1"), &claims)).await.unwrap();
}

#[tokio::test]
async fn a_token_without_kid_needs_exactly_one_key() {
    let server = one_key_server();
    let verifier = verifier_for(&server);
    let token = sign(None, &claims(&server.issuer()));
    verify(&verifier, &token).await.unwrap();

    let server = Server::issuer_with(&jwks(&[
        jwk(RSA1_JWK, "k1", Some("RS256")),
        jwk(RSA2_JWK, "k2", Some("RS256")),
    ]));
    let verifier = JwtVerifier::new(server.settings()).unwrap();
    // Warm the cache with a kid'ed token first, then the kid-less one.
    verify(&verifier, &sign(Some("k1"), &claims(&server.issuer())))
        .await
        .unwrap();
    let token = sign(None, &claims(&server.issuer()));
    assert_invalid(verify(&verifier, &token).await, &token, "several keys");
}

#[tokio::test]
async fn bad_identity_claims_are_rejected() {
    let server = one_key_server();
    let verifier = verifier_for(&server);
    let issuer = server.issuer();
    let cases = [
        (json!({ "sub": null }), "missing user id claim sub"),
        (json!({ "sub": "" }), "user id is empty"),
        (json!({ "sub": 42 }), "not a string"),
        (json!({ "sub": "x".repeat(201) }), "longer than"),
        (json!({ ORG_CLAIM: 7 }), "not a string"),
        (json!({ ORG_CLAIM: "" }), "organisation id is empty"),
        (json!({ "preferred_username": ["a"] }), "not a string"),
        (json!({ "preferred_username": "a\nb" }), "control character"),
    ];
    for (change, expected) in cases {
        let token = sign(Some("k1"), &with(claims(&issuer), &change));
        assert_invalid(verify(&verifier, &token).await, &token, expected);
    }
}

#[tokio::test]
async fn garbage_is_rejected() {
    let server = one_key_server();
    let verifier = verifier_for(&server);
    for garbage in [
        "",
        "garbage",
        "a.b",
        "a.b.c",
        "a.b.c.d",
        "....",
        "e30.e30.e30",
    ] {
        assert_invalid(verify(&verifier, garbage).await, garbage, "malformed");
    }
    let crit = {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("k1".into());
        header.extras.insert("crit", json!(["exp"]));
        jsonwebtoken::encode(
            &header,
            &claims(&server.issuer()),
            &EncodingKey::from_rsa_pem(RSA1_KEY).unwrap(),
        )
        .unwrap()
    };
    assert_invalid(verify(&verifier, &crit).await, &crit, "critical");
}

#[tokio::test]
async fn a_token_over_16_kib_is_rejected_before_parsing() {
    let server = one_key_server();
    let verifier = verifier_for(&server);
    let claims = with(
        claims(&server.issuer()),
        &json!({ "padding": "x".repeat(20 * 1024) }),
    );
    let token = sign(Some("k1"), &claims);
    assert!(token.len() > 20 * 1024);
    assert_invalid(verify(&verifier, &token).await, &token, "16 KiB");
    assert_eq!(server.hits("/.well-known/openid-configuration"), 0);
    assert_eq!(server.hits("/jwks"), 0);

    // Just under the limit is parsed as usual.
    let padding = "x".repeat(11 * 1024);
    let claims = with(
        adapters_token::testing::claims(&server.issuer()),
        &json!({ "padding": padding }),
    );
    let token = sign(Some("k1"), &claims);
    assert!(token.len() <= 16 * 1024, "{}", token.len());
    verify(&verifier, &token).await.unwrap();
}

#[tokio::test]
async fn issuer_down_is_unavailable() {
    let issuer = dead_url();
    let mut settings = Server::start().settings();
    settings.issuer.clone_from(&issuer);
    let verifier = JwtVerifier::new(settings).unwrap();
    let token = sign(Some("k1"), &claims(&issuer));
    match verify(&verifier, &token).await {
        Err(TokenError::Unavailable(reason)) => {
            assert!(reason.contains("openid-configuration"), "{reason}");
            assert!(!reason.contains(token.split('.').nth(2).unwrap()));
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    // Every later request tries again (the cache is empty), still unavailable.
    assert!(matches!(
        verify(&verifier, &token).await,
        Err(TokenError::Unavailable(_))
    ));
}

#[tokio::test]
async fn bad_responses_are_unavailable_until_fixed() {
    let server = Server::start();
    server.serve_discovery();
    let verifier = verifier_for(&server);
    let token = sign(Some("k1"), &claims(&server.issuer()));

    let cases = [
        (500, "oops".to_owned(), "500"),
        (404, String::new(), "404"),
        (200, "not json".to_owned(), "not JSON"),
        (200, json!({ "no": "keys" }).to_string(), "no `keys`"),
        (200, json!({ "keys": [] }).to_string(), "no usable"),
    ];
    for (status, body, expected) in cases {
        server.set("/jwks", status, &body);
        match verify(&verifier, &token).await {
            Err(TokenError::Unavailable(reason)) => {
                assert!(reason.contains(expected), "{reason:?} vs {expected:?}");
            }
            other => panic!("expected Unavailable for {status} {body}, got {other:?}"),
        }
    }
    // No key was ever cached, so the next request fetches again at once.
    server.set_jwks(&jwks(&[jwk(RSA1_JWK, "k1", Some("RS256"))]));
    verify(&verifier, &token).await.unwrap();

    // A discovery document without jwks_uri.
    let server = Server::start();
    let doc = json!({ "issuer": server.issuer() }).to_string();
    server.set("/.well-known/openid-configuration", 200, &doc);
    let verifier = verifier_for(&server);
    let token = sign(Some("k1"), &claims(&server.issuer()));
    assert!(matches!(
        verify(&verifier, &token).await,
        Err(TokenError::Unavailable(reason)) if reason.contains("jwks_uri")
    ));
}

#[tokio::test]
async fn explicit_jwks_url_bypasses_discovery() {
    let server = Server::start();
    server.set(
        "/keys",
        200,
        &jwks(&[jwk(RSA1_JWK, "k1", Some("RS256"))]).to_string(),
    );
    let mut settings = server.settings();
    settings.jwks_url = Some(format!("{}/keys", server.url()));
    let verifier = JwtVerifier::new(settings).unwrap();
    verify(&verifier, &sign(Some("k1"), &claims(&server.issuer())))
        .await
        .unwrap();
    assert_eq!(server.hits("/keys"), 1);
    assert_eq!(server.hits("/.well-known/openid-configuration"), 0);

    // An explicit URL nobody answers: unavailable, no discovery either.
    let mut settings = server.settings();
    settings.jwks_url = Some(format!("{}/keys", dead_url()));
    let verifier = JwtVerifier::new(settings).unwrap();
    assert!(matches!(
        verify(&verifier, &sign(Some("k1"), &claims(&server.issuer()))).await,
        Err(TokenError::Unavailable(_))
    ));
    assert_eq!(server.hits("/.well-known/openid-configuration"), 0);
}

#[tokio::test]
async fn key_rotation_is_picked_up_after_the_interval() {
    let server = one_key_server();
    let mut settings = server.settings();
    settings.min_refresh_interval = Duration::from_millis(300);
    let verifier = JwtVerifier::new(settings).unwrap();
    let claims = claims(&server.issuer());
    let old = sign(Some("k1"), &claims);
    let new = sign_with(RSA2_KEY, Algorithm::RS256, Some("k2"), &claims);

    verify(&verifier, &old).await.unwrap();
    server.set_jwks(&jwks(&[jwk(RSA2_JWK, "k2", Some("RS256"))]));
    tokio::time::sleep(Duration::from_millis(350)).await;

    let principal = verify(&verifier, &new).await.unwrap();
    assert_eq!(principal.user_id.as_str(), "69629023906488334");
    assert_eq!(server.hits("/jwks"), 2);
    // The old key is gone from the new set (and the refresh is rate limited).
    assert_invalid(verify(&verifier, &old).await, &old, "unknown kid");
    assert_eq!(server.hits("/jwks"), 2);
}

#[tokio::test]
async fn cached_keys_survive_an_outage() {
    let server = one_key_server();
    let mut settings = server.settings();
    settings.min_refresh_interval = Duration::from_millis(50);
    let verifier = JwtVerifier::new(settings).unwrap();
    let claims = claims(&server.issuer());
    let known = sign(Some("k1"), &claims);
    verify(&verifier, &known).await.unwrap();

    server.set("/jwks", 503, "");
    tokio::time::sleep(Duration::from_millis(80)).await;
    let unknown = sign_with(RSA2_KEY, Algorithm::RS256, Some("k2"), &claims);
    // A kid the cached set lacks is refused (401), not "unavailable" (503).
    assert!(matches!(
        verify(&verifier, &unknown).await,
        Err(TokenError::Invalid(reason)) if reason.contains("unknown kid") && reason.contains("503")
    ));
    assert_eq!(server.hits("/jwks"), 2);
    // The cached key still verifies, without asking the issuer.
    verify(&verifier, &known).await.unwrap();
    assert_eq!(server.hits("/jwks"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_do_not_stampede() {
    let server = one_key_server();
    let mut settings = server.settings();
    settings.min_refresh_interval = Duration::from_millis(500);
    let verifier = Arc::new(JwtVerifier::new(settings).unwrap());
    let claims = claims(&server.issuer());
    let known = sign(Some("k1"), &claims);
    let unknown = sign_with(RSA2_KEY, Algorithm::RS256, Some("k2"), &claims);

    let run = |token: String| {
        let verifier = Arc::clone(&verifier);
        tokio::spawn(async move { verify(&verifier, &token).await })
    };

    // A cold cache and 32 requests at once: one discovery, one JWKS fetch.
    let tasks: Vec<_> = (0..32).map(|_| run(known.clone())).collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(server.hits("/.well-known/openid-configuration"), 1);
    assert_eq!(server.hits("/jwks"), 1);

    // After the interval, 32 unknown-kid requests at once: one refetch.
    tokio::time::sleep(Duration::from_millis(550)).await;
    let tasks: Vec<_> = (0..32).map(|_| run(unknown.clone())).collect();
    for task in tasks {
        assert!(matches!(task.await.unwrap(), Err(TokenError::Invalid(_))));
    }
    assert_eq!(server.hits("/jwks"), 2);
}

#[tokio::test]
async fn debug_shows_no_key_material() {
    let server = one_key_server();
    let verifier = verifier_for(&server);
    verify(&verifier, &sign(Some("k1"), &claims(&server.issuer())))
        .await
        .unwrap();
    let debug = format!("{verifier:?}");
    let n: Value = serde_json::from_str(RSA1_JWK).unwrap();
    let n = n["n"].as_str().unwrap();
    assert!(debug.contains("JwtVerifier"), "{debug}");
    assert!(debug.contains("cached_keys: 1"), "{debug}");
    assert!(!debug.contains(&n[..16]), "{debug}");
    assert!(!debug.contains("AQAB"), "{debug}");
}

#[test]
fn bad_settings_are_refused() {
    let server = Server::start();
    let refused = |change: &dyn Fn(&mut adapters_token::JwtSettings)| {
        let mut settings = server.settings();
        change(&mut settings);
        match JwtVerifier::new(settings) {
            Err(TokenConfigError::InvalidSetting(_)) => {}
            other => panic!("expected InvalidSetting, got {other:?}"),
        }
    };
    refused(&|s| s.issuer = String::new());
    refused(&|s| s.audience = " ".into());
    refused(&|s| s.issuer = "not a url".into());
    refused(&|s| s.jwks_url = Some("ftp://example.com/keys".into()));
    refused(&|s| s.claims.user_id = String::new());
    refused(&|s| s.claims.scope = " ".into());
    refused(&|s| s.http_timeout = Duration::ZERO);
    // A non-URL issuer is fine when the JWKS URL is given.
    let mut settings = server.settings();
    settings.issuer = "acme".into();
    settings.jwks_url = Some(format!("{}/jwks", server.url()));
    JwtVerifier::new(settings).unwrap();
}

/// A fresh EC key pair: its signing key and its public JWK.
fn ec_key(
    signing: &'static aws_lc_rs::signature::EcdsaSigningAlgorithm,
    crv: &str,
    kid: &str,
) -> (EncodingKey, Value) {
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair};
    let pair = EcdsaKeyPair::generate(signing).unwrap();
    let point = pair.public_key().as_ref().to_vec();
    let len = (point.len() - 1) / 2;
    let jwk = json!({
        "kty": "EC", "crv": crv, "kid": kid, "use": "sig",
        "x": b64(&point[1..=len]), "y": b64(&point[1 + len..]),
    });
    (
        EncodingKey::from_ec_der(pair.to_pkcs8v1().unwrap().as_ref()),
        jwk,
    )
}

#[tokio::test]
async fn ec_keys_verify_es256_and_es384() {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING};
    let (p256, p256_jwk) = ec_key(&ECDSA_P256_SHA256_FIXED_SIGNING, "P-256", "ec256");
    let (p384, p384_jwk) = ec_key(&ECDSA_P384_SHA384_FIXED_SIGNING, "P-384", "ec384");
    let server = Server::issuer_with(&jwks(&[p256_jwk, p384_jwk]));
    let verifier = verifier_for(&server);
    let claims = claims(&server.issuer());
    let token = |alg: Algorithm, kid: &str, key: &EncodingKey| {
        let mut header = Header::new(alg);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, &claims, key).unwrap()
    };

    verify(&verifier, &token(Algorithm::ES256, "ec256", &p256))
        .await
        .unwrap();
    verify(&verifier, &token(Algorithm::ES384, "ec384", &p384))
        .await
        .unwrap();
    // A P-384 token naming the P-256 key, and the other way round.
    let crossed = token(Algorithm::ES384, "ec256", &p384);
    assert_invalid(
        verify(&verifier, &crossed).await,
        &crossed,
        "does not match the key",
    );
    let crossed = token(Algorithm::ES256, "ec384", &p256);
    assert_invalid(
        verify(&verifier, &crossed).await,
        &crossed,
        "does not match the key",
    );
    // Signed by the P-256 key but naming another P-256 key's kid.
    let (other, _) = ec_key(&ECDSA_P256_SHA256_FIXED_SIGNING, "P-256", "x");
    let forged = token(Algorithm::ES256, "ec256", &other);
    assert_invalid(verify(&verifier, &forged).await, &forged, "bad signature");
}

/// RS256 with fixture key 1, kid `k1`, and header `typ` as given.
fn sign_typed(typ: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("k1".into());
    header.typ = typ.map(str::to_owned);
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_rsa_pem(RSA1_KEY).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn only_access_token_types_pass_the_typ_check() {
    let server = one_key_server();
    let verifier = verifier_for(&server);
    let claims = claims(&server.issuer());
    for typ in [
        None,
        Some("JWT"),
        Some("jwt"),
        Some("at+jwt"),
        Some("application/at+jwt"),
        Some("AT+JWT"),
    ] {
        verify(&verifier, &sign_typed(typ, &claims))
            .await
            .unwrap_or_else(|e| panic!("typ {typ:?}: {e:?}"));
    }
    for typ in [
        "logout+jwt",
        "secevent+jwt",
        "dpop+jwt",
        "id_token+jwt",
        "JOSE",
        "application/jwt+x",
    ] {
        let token = sign_typed(Some(typ), &claims);
        assert_invalid(verify(&verifier, &token).await, &token, "typ");
    }
    let token = hand_made(
        &json!({"alg": "RS256", "kid": "k1", "typ": 7}),
        &claims,
        "c2ln",
    );
    assert_invalid(verify(&verifier, &token).await, &token, "typ");
}

#[tokio::test]
async fn an_id_token_with_the_audience_is_refused() {
    let server = one_key_server();
    let verifier = verifier_for(&server);
    let issuer = server.issuer();
    // What ZITADEL signs as an ID token: typ JWT, aud containing the project,
    // and the ID-token-only claims.
    for (claim, value) in [
        ("nonce", json!("n-0S6_WzA2Mj")),
        ("at_hash", json!("77QmUPtjPfzWtF2AnpK9RQ")),
        ("c_hash", json!("LDktKdoQak3Pk0cnXxCltA")),
        ("s_hash", json!("x")),
    ] {
        let token = sign(Some("k1"), &with(claims(&issuer), &json!({ claim: value })));
        assert_invalid(verify(&verifier, &token).await, &token, "ID token");
    }
}

#[tokio::test]
async fn the_authorized_party_must_be_the_audience_or_an_allowed_client() {
    let server = one_key_server();
    let mut settings = server.settings();
    settings.allowed_clients = vec!["web-app".into()];
    let strict = JwtVerifier::new(settings).unwrap();
    let open = verifier_for(&server);
    let issuer = server.issuer();
    let azp = |value: Value| sign(Some("k1"), &with(claims(&issuer), &json!({ "azp": value })));

    let foreign = azp(json!("some-other-app"));
    assert_invalid(
        verify(&strict, &foreign).await,
        &foreign,
        "authorized party",
    );
    let by_client_id = sign(
        Some("k1"),
        &with(claims(&issuer), &json!({ "client_id": "some-other-app" })),
    );
    assert_invalid(
        verify(&strict, &by_client_id).await,
        &by_client_id,
        "authorized party",
    );
    let principal = verify(&strict, &azp(json!("web-app"))).await.unwrap();
    assert_eq!(principal.authorized_party.as_deref(), Some("web-app"));
    verify(&strict, &azp(json!(AUDIENCE))).await.unwrap();
    verify(&strict, &sign(Some("k1"), &claims(&issuer)))
        .await
        .unwrap();
    // Without a list, any client of the audience.
    verify(&open, &foreign).await.unwrap();
}

#[tokio::test]
async fn redirects_from_discovery_or_the_jwks_are_not_followed() {
    // Discovery redirects to a document elsewhere: not followed.
    let elsewhere = one_key_server();
    let server = Server::start();
    server.redirect(
        "/.well-known/openid-configuration",
        &format!("{}/.well-known/openid-configuration", elsewhere.url()),
    );
    let verifier = verifier_for(&server);
    let token = sign(Some("k1"), &claims(&server.issuer()));
    match verify(&verifier, &token).await {
        Err(TokenError::Unavailable(reason)) => assert!(reason.contains("302"), "{reason}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert_eq!(elsewhere.hits("/.well-known/openid-configuration"), 0);

    // The JWKS redirects to another key set: not followed.
    let server = Server::start();
    server.serve_discovery();
    server.redirect("/jwks", &format!("{}/jwks", elsewhere.url()));
    let verifier = verifier_for(&server);
    let token = sign(Some("k1"), &claims(&server.issuer()));
    assert!(matches!(
        verify(&verifier, &token).await,
        Err(TokenError::Unavailable(_))
    ));
    assert_eq!(elsewhere.hits("/jwks"), 0);
}

#[tokio::test]
async fn discovery_must_name_the_configured_issuer() {
    let server = one_key_server();
    let doc =
        json!({ "issuer": "https://evil.example", "jwks_uri": format!("{}/jwks", server.url()) });
    server.set("/.well-known/openid-configuration", 200, &doc.to_string());
    let verifier = verifier_for(&server);
    let token = sign(Some("k1"), &claims(&server.issuer()));
    match verify(&verifier, &token).await {
        Err(TokenError::Unavailable(reason)) => {
            assert!(reason.contains("not the configured issuer"), "{reason}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert_eq!(server.hits("/jwks"), 0, "its keys are never fetched");
}

#[tokio::test]
async fn plain_http_only_to_loopback_unless_allowed() {
    let server = one_key_server();
    let refused = |change: &dyn Fn(&mut adapters_token::JwtSettings)| {
        let mut settings = server.settings();
        change(&mut settings);
        match JwtVerifier::new(settings) {
            Err(TokenConfigError::InvalidSetting(reason)) => {
                assert!(reason.contains("not loopback"), "{reason}");
            }
            other => panic!("expected InvalidSetting, got {other:?}"),
        }
    };
    refused(&|s| s.issuer = "http://issuer.example".into());
    refused(&|s| s.jwks_url = Some("http://issuer.example/keys".into()));
    refused(&|s| {
        s.issuer = "http://issuer.example".into();
        s.jwks_url = Some(format!("{}/jwks", server.url()));
    });
    let mut settings = server.settings();
    settings.issuer = "http://issuer.example".into();
    settings.allow_http = true;
    JwtVerifier::new(settings).unwrap();

    // A discovered jwks_uri over http to another host is refused too.
    let doc = json!({ "issuer": server.issuer(), "jwks_uri": "http://keys.example/jwks" });
    server.set("/.well-known/openid-configuration", 200, &doc.to_string());
    let verifier = verifier_for(&server);
    let token = sign(Some("k1"), &claims(&server.issuer()));
    match verify(&verifier, &token).await {
        Err(TokenError::Unavailable(reason)) => {
            assert!(reason.contains("not loopback"), "{reason}")
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}
