//! The development issuer: tokens it signs and the verifier that trusts it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failure is a panic"
)]

use std::time::Duration;

use adapters_token::{ClaimNames, DevIssuer, JwtSettings, JwtVerifier, TokenConfigError};
use application::{TokenError, TokenVerifier};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

const ISSUER: &str = "http://localhost:8080";
const AUDIENCE: &str = "otp-service";
const LEEWAY: Duration = Duration::from_secs(30);
const HOUR: Duration = Duration::from_secs(3600);

fn claims_of(token: &SecretString) -> (Value, Value) {
    let parts: Vec<&str> = token.expose_secret().split('.').collect();
    assert_eq!(parts.len(), 3);
    let decode = |part: &str| -> Value {
        serde_json::from_slice(
            &data_encoding::BASE64URL_NOPAD
                .decode(part.as_bytes())
                .unwrap(),
        )
        .unwrap()
    };
    (decode(parts[0]), decode(parts[1]))
}

#[tokio::test]
async fn round_trip() {
    let issuer = DevIssuer::generate(ISSUER, AUDIENCE).unwrap();
    let token = issuer
        .issue("u1", Some("org1"), Some("alice@example.com"), HOUR)
        .unwrap();
    let (header, claims) = claims_of(&token);
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["kid"], issuer.kid());
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["aud"], AUDIENCE);
    assert_eq!(claims["sub"], "u1");
    assert_eq!(claims["urn:zitadel:iam:user:resourceowner:id"], "org1");
    assert_eq!(claims["preferred_username"], "alice@example.com");
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    assert_eq!(exp - iat, 3600);

    let verifier = issuer.verifier(ClaimNames::default(), LEEWAY);
    let principal = verifier.verify(&token).await.unwrap();
    assert_eq!(principal.user_id.as_str(), "u1");
    assert_eq!(principal.org_id.unwrap().as_str(), "org1");
    assert_eq!(principal.login_name.unwrap().as_str(), "alice@example.com");

    let bare = issuer.issue("u2", None, None, HOUR).unwrap();
    let principal = verifier.verify(&bare).await.unwrap();
    assert_eq!(principal.user_id.as_str(), "u2");
    assert_eq!(principal.org_id, None);
    assert_eq!(principal.login_name, None);
}

#[tokio::test]
async fn another_dev_issuers_token_is_rejected() {
    let ours = DevIssuer::generate(ISSUER, AUDIENCE).unwrap();
    let theirs = DevIssuer::generate(ISSUER, AUDIENCE).unwrap();
    let verifier = ours.verifier(ClaimNames::default(), LEEWAY);
    let token = theirs.issue("u1", None, None, HOUR).unwrap();
    assert!(matches!(
        verifier.verify(&token).await,
        Err(TokenError::Invalid(reason)) if reason.contains("unknown kid")
    ));

    // Even relabelled with our kid, the signature does not verify.
    let (mut header, _) = claims_of(&token);
    header["kid"] = ours.kid().into();
    let rest: Vec<&str> = token.expose_secret().splitn(2, '.').collect();
    let forged = format!(
        "{}.{}",
        data_encoding::BASE64URL_NOPAD.encode(header.to_string().as_bytes()),
        rest[1]
    );
    assert!(matches!(
        verifier.verify(&SecretString::from(forged)).await,
        Err(TokenError::Invalid(reason)) if reason.contains("bad signature")
    ));
}

#[tokio::test]
async fn dev_tokens_follow_the_same_rules() {
    let issuer = DevIssuer::generate(ISSUER, AUDIENCE).unwrap();
    // Another audience, or custom claim names the dev token lacks.
    let other_audience = DevIssuer::generate(ISSUER, "someone-else").unwrap();
    let verifier = issuer.verifier(ClaimNames::default(), LEEWAY);
    let token = other_audience.issue("u1", None, None, HOUR).unwrap();
    assert!(matches!(
        verifier.verify(&token).await,
        Err(TokenError::Invalid(_))
    ));

    let custom = issuer.verifier(
        ClaimNames {
            user_id: "uid".into(),
            ..ClaimNames::default()
        },
        LEEWAY,
    );
    let token = issuer.issue("u1", None, None, HOUR).unwrap();
    assert!(matches!(
        custom.verify(&token).await,
        Err(TokenError::Invalid(reason)) if reason.contains("uid")
    ));

    // An expired dev token (ttl 0 and no leeway, checked after the second ends).
    let strict = issuer.verifier(ClaimNames::default(), Duration::ZERO);
    let token = issuer.issue("u1", None, None, Duration::ZERO).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(matches!(
        strict.verify(&token).await,
        Err(TokenError::Invalid(reason)) if reason.contains("expired")
    ));
}

#[tokio::test]
async fn the_public_jwks_serves_a_jwt_verifier() {
    let issuer = DevIssuer::generate(ISSUER, AUDIENCE).unwrap();
    let jwks = issuer.public_jwks();
    assert_eq!(jwks["keys"][0]["kty"], "OKP");
    assert_eq!(jwks["keys"][0]["kid"], issuer.kid());

    let server = adapters_token::testing::Server::start();
    server.set("/jwks", 200, &jwks.to_string());
    let mut settings = JwtSettings::new(ISSUER, AUDIENCE);
    settings.jwks_url = Some(format!("{}/jwks", server.url()));
    let verifier = JwtVerifier::new(settings).unwrap();
    let token = issuer.issue("u1", Some("org1"), None, HOUR).unwrap();
    let principal = verifier.verify(&token).await.unwrap();
    assert_eq!(principal.user_id.as_str(), "u1");
    assert_eq!(server.hits("/jwks"), 1);
}

#[test]
fn bad_claims_and_settings_are_refused() {
    assert!(matches!(
        DevIssuer::generate("", AUDIENCE),
        Err(TokenConfigError::InvalidSetting(_))
    ));
    assert!(matches!(
        DevIssuer::generate(ISSUER, ""),
        Err(TokenConfigError::InvalidSetting(_))
    ));
    let issuer = DevIssuer::generate(ISSUER, AUDIENCE).unwrap();
    for (sub, org, login) in [
        ("", None, None),
        ("u1", Some(""), None),
        ("u1", None, Some("a\u{7}b")),
    ] {
        assert!(matches!(
            issuer.issue(sub, org, login, HOUR),
            Err(TokenConfigError::Claim(_))
        ));
    }
}

#[test]
fn debug_shows_no_key_material() {
    let issuer = DevIssuer::generate(ISSUER, AUDIENCE).unwrap();
    let x = issuer.public_jwks()["keys"][0]["x"]
        .as_str()
        .unwrap()
        .to_owned();
    let debug = format!("{issuer:?}");
    assert!(
        debug.contains("DevIssuer") && debug.contains(issuer.kid()),
        "{debug}"
    );
    assert!(!debug.contains(&x), "{debug}");
    assert!(!debug.contains(&x[..12]), "{debug}");

    let verifier = format!("{:?}", issuer.verifier(ClaimNames::default(), LEEWAY));
    assert!(verifier.contains("JwtVerifier"), "{verifier}");
    assert!(!verifier.contains(&x[..12]), "{verifier}");
}
