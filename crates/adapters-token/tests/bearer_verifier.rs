//! `BearerVerifier`: JWTs checked locally first, opaque tokens (and JWTs
//! that fail locally) introspected.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failure is a panic"
)]

use adapters_token::{BearerVerifier, IntrospectionVerifier, JwtVerifier, TokenConfigError};
use application::{Principal, TokenError, TokenVerifier};
use jsonwebtoken::Algorithm;
use secrecy::SecretString;
use serde_json::json;

use adapters_token::testing::idp::{Expect, Idp, active, basic};
use adapters_token::testing::*;

const OPAQUE: &str = "bT7YdcRJx3Mw-7rUqUEn1AC5gkCjPGTmRtH3JmUVxPALmUbbjL0hq6Ia3KyQ8mBp";

/// An issuer serving a JWKS (fixture key 1 as `k1`) and introspection.
fn issuer() -> Idp {
    let idp = Idp::start(Expect::Basic);
    idp.server
        .set_jwks(&jwks(&[jwk(RSA1_JWK, "k1", Some("RS256"))]));
    idp
}

fn jwt_verifier(idp: &Idp) -> JwtVerifier {
    JwtVerifier::new(idp.server.settings()).unwrap()
}

fn introspection(idp: &Idp) -> IntrospectionVerifier {
    IntrospectionVerifier::new(idp.settings(basic())).unwrap()
}

async fn verify(verifier: &BearerVerifier, token: &str) -> Result<Principal, TokenError> {
    verifier.verify(&SecretString::from(token)).await
}

#[tokio::test]
async fn a_good_jwt_is_checked_locally() {
    let idp = issuer();
    let verifier =
        BearerVerifier::new(Some(jwt_verifier(&idp)), Some(introspection(&idp))).unwrap();
    let token = sign(Some("k1"), &claims(&idp.issuer()));
    let principal = verify(&verifier, &token).await.unwrap();
    assert_eq!(principal.user_id.as_str(), "69629023906488334");
    assert_eq!(idp.introspections(), 0);
    assert_eq!(idp.server.hits("/jwks"), 1);
}

#[tokio::test]
async fn an_opaque_token_is_introspected() {
    let idp = issuer();
    idp.answer(OPAQUE, &active(&idp.issuer()));
    let verifier =
        BearerVerifier::new(Some(jwt_verifier(&idp)), Some(introspection(&idp))).unwrap();
    let principal = verify(&verifier, OPAQUE).await.unwrap();
    assert_eq!(principal.scopes, ["openid", "profile", "otp:login"]);
    assert_eq!(idp.asked(), [OPAQUE]);
    assert_eq!(idp.server.hits("/jwks"), 0, "an opaque token needs no keys");
}

#[tokio::test]
async fn a_jwt_that_fails_locally_falls_back_to_introspection() {
    let idp = issuer();
    let verifier =
        BearerVerifier::new(Some(jwt_verifier(&idp)), Some(introspection(&idp))).unwrap();
    // Signed by a key the JWKS does not have (but under its kid).
    let token = sign_with(
        RSA2_KEY,
        Algorithm::RS256,
        Some("k1"),
        &claims(&idp.issuer()),
    );
    idp.answer(&token, &active(&idp.issuer()));
    let principal = verify(&verifier, &token).await.unwrap();
    assert_eq!(principal.user_id.as_str(), "69629023906488334");
    assert_eq!(idp.asked(), [token.as_str()]);

    // Both say no: invalid, with both reasons.
    let expired = sign(
        Some("k1"),
        &json!({ "iss": idp.issuer(), "aud": AUDIENCE, "sub": "u", "exp": now() - 3600 }),
    );
    match verify(&verifier, &expired).await {
        Err(TokenError::Invalid(reason)) => {
            assert!(reason.contains("as a JWT: expired"), "{reason}");
            assert!(reason.contains("introspected: inactive"), "{reason}");
        }
        other => panic!("expected Invalid, got {other:?}"),
    }

    // The JWT fails and the endpoint fails: unavailable (the token may be fine).
    let mut other_claims = claims(&idp.issuer());
    other_claims["jti"] = "another token".into();
    let unknown = sign_with(RSA2_KEY, Algorithm::RS256, Some("k1"), &other_claims);
    idp.respond(&unknown, 503, "{}");
    assert!(matches!(
        verify(&verifier, &unknown).await,
        Err(TokenError::Unavailable(reason)) if reason.contains("HTTP status 503")
    ));
}

#[tokio::test]
async fn with_only_one_verifier() {
    let idp = issuer();
    idp.answer(OPAQUE, &active(&idp.issuer()));

    let jwt_only = BearerVerifier::new(Some(jwt_verifier(&idp)), None).unwrap();
    assert!(matches!(
        verify(&jwt_only, OPAQUE).await,
        Err(TokenError::Invalid(reason)) if reason.contains("not a JWT")
    ));
    let forged = sign_with(
        RSA2_KEY,
        Algorithm::RS256,
        Some("k1"),
        &claims(&idp.issuer()),
    );
    assert!(matches!(
        verify(&jwt_only, &forged).await,
        Err(TokenError::Invalid(reason)) if reason == "bad signature"
    ));
    assert_eq!(idp.introspections(), 0);

    // Without a JWT verifier, even a JWT is introspected.
    let introspection_only = BearerVerifier::new(None, Some(introspection(&idp))).unwrap();
    let token = sign(Some("k1"), &claims(&idp.issuer()));
    idp.answer(&token, &active(&idp.issuer()));
    verify(&introspection_only, &token).await.unwrap();
    verify(&introspection_only, OPAQUE).await.unwrap();
    assert_eq!(idp.introspections(), 2);
    assert_eq!(
        idp.server.hits("/jwks"),
        1,
        "only the forged token's key lookup"
    );

    assert!(matches!(
        BearerVerifier::new(None, None),
        Err(TokenConfigError::InvalidSetting(_))
    ));
}
