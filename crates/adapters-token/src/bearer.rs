//! The combining verifier: JWTs checked locally, everything else (and JWTs
//! that fail locally) asked of the introspection endpoint.

use async_trait::async_trait;
use data_encoding::BASE64URL_NOPAD;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use application::{Principal, TokenError, TokenVerifier};

use crate::introspection::IntrospectionVerifier;
use crate::settings::TokenConfigError;
use crate::verifier::{JwtVerifier, MAX_TOKEN_LEN};

/// Verifies a bearer token with a [`JwtVerifier`], an
/// [`IntrospectionVerifier`], or both.
///
/// - A token that looks like a JWT (three dot-separated base64url segments,
///   the first decoding to a JSON object with an `alg` member) is checked as
///   a JWT first. If that succeeds, that is the answer. If it fails (for any
///   reason, rejection or unavailable keys) and introspection is configured,
///   the token is introspected and that answer counts; without
///   introspection, the JWT verifier's error is returned.
/// - Any other (opaque) token is introspected, or is
///   [`TokenError::Invalid`] when no introspection is configured.
/// - A JWT-looking token without a JWT verifier goes to introspection.
///
/// When both were tried and both failed, the error is the introspection's
/// kind with both reasons.
#[derive(Debug)]
pub struct BearerVerifier {
    jwt: Option<JwtVerifier>,
    introspection: Option<IntrospectionVerifier>,
}

impl BearerVerifier {
    /// Combines the verifiers given.
    ///
    /// # Errors
    /// [`TokenConfigError::InvalidSetting`] when neither is given.
    pub fn new(
        jwt: Option<JwtVerifier>,
        introspection: Option<IntrospectionVerifier>,
    ) -> Result<Self, TokenConfigError> {
        if jwt.is_none() && introspection.is_none() {
            return Err(TokenConfigError::InvalidSetting(
                "neither JWT verification nor introspection is configured".into(),
            ));
        }
        Ok(Self { jwt, introspection })
    }
}

/// Whether `token` has the shape of a JWS compact serialization: three
/// base64url segments whose first is a JSON object with `alg`.
fn looks_like_jwt(token: &str) -> bool {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    BASE64URL_NOPAD
        .decode(header.as_bytes())
        .ok()
        .and_then(|header| serde_json::from_slice::<Map<String, Value>>(&header).ok())
        .is_some_and(|header| header.contains_key("alg"))
}

#[async_trait]
impl TokenVerifier for BearerVerifier {
    async fn verify(&self, token: &SecretString) -> Result<Principal, TokenError> {
        if token.expose_secret().len() > MAX_TOKEN_LEN {
            return Err(TokenError::Invalid("token longer than 16 KiB".into()));
        }
        let jwt_error = match &self.jwt {
            Some(jwt) if looks_like_jwt(token.expose_secret()) => match jwt.verify(token).await {
                Ok(principal) => return Ok(principal),
                Err(error) => Some(error),
            },
            _ => None,
        };
        match (&self.introspection, jwt_error) {
            (Some(introspection), None) => introspection.verify(token).await,
            (Some(introspection), Some(jwt_error)) => introspection
                .verify(token)
                .await
                .map_err(|error| with_jwt_reason(error, &jwt_error)),
            (None, Some(jwt_error)) => Err(jwt_error),
            (None, None) => Err(TokenError::Invalid(
                "not a JWT, and no introspection is configured".into(),
            )),
        }
    }
}

/// The introspection's error, its reason preceded by the JWT verifier's.
fn with_jwt_reason(error: TokenError, jwt_error: &TokenError) -> TokenError {
    let jwt_reason = match jwt_error {
        TokenError::Invalid(reason) | TokenError::Unavailable(reason) => reason,
    };
    match error {
        TokenError::Invalid(reason) => {
            TokenError::Invalid(format!("as a JWT: {jwt_reason}; introspected: {reason}"))
        }
        TokenError::Unavailable(reason) => {
            TokenError::Unavailable(format!("as a JWT: {jwt_reason}; introspected: {reason}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(text: &str) -> String {
        BASE64URL_NOPAD.encode(text.as_bytes())
    }

    #[test]
    fn jwt_shape() {
        let header = b64(r#"{"alg":"RS256","kid":"k"}"#);
        assert!(looks_like_jwt(&format!("{header}.e30.c2ln")));
        assert!(looks_like_jwt(&format!("{header}..")));
        assert!(!looks_like_jwt(&format!("{header}.e30")));
        assert!(!looks_like_jwt(&format!("{header}.e30.c2ln.x")));
        assert!(!looks_like_jwt(&format!(
            "{}.e30.c2ln",
            b64(r#"{"typ":"JWT"}"#)
        )));
        assert!(!looks_like_jwt(&format!("{}.e30.c2ln", b64(r#"["alg"]"#))));
        assert!(!looks_like_jwt("dGhpcyBpcyBvcGFxdWU.x.y"));
        assert!(!looks_like_jwt(
            "q9IvmbDNwyFTt2K4gOnvWn0h4zxgqP7bO2mOFZx8ufPKq"
        ));
        assert!(!looks_like_jwt(""));
    }
}
