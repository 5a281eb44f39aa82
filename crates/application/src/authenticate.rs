//! "Me": from the `Authorization` header to the signed-in user.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use secrecy::SecretString;

use domain::{LoginName, OrgId, UserId};

use crate::error::ApplicationError;
use crate::ports::{TokenError, TokenVerifier};

/// The signed-in user, as the token tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user's id (`sub` by default).
    pub user_id: UserId,
    /// The user's organisation (the `details.resourceOwner`), when the token carries it.
    pub org_id: Option<OrgId>,
    /// The login name, the otpauth URL's account; the user id stands in when absent.
    pub login_name: Option<LoginName>,
    /// The OAuth scopes the token grants (`scope` claim or introspection
    /// answer); trusted callers of the login check need a configured one.
    pub scopes: Vec<String>,
    /// The OAuth client the token was issued to (`client_id`), when named.
    pub client_id: Option<String>,
    /// The authorized party (`azp`), when the token names one.
    pub authorized_party: Option<String>,
    /// When the user signed in (`auth_time`), when the token tells.
    pub auth_time: Option<DateTime<Utc>>,
    /// How the user signed in (`amr`, RFC 8176 values such as `pwd`, `mfa`).
    pub amr: Vec<String>,
    /// The roles the token grants (the configured roles claim: ZITADEL's
    /// project roles object, or an array of role names); they make an
    /// administrator (see [`crate::AdminPolicy`]).
    pub roles: Vec<String>,
}

impl Principal {
    /// A principal that is `user_id` and nothing more: no organisation,
    /// login name, scopes, client, sign-in facts or roles. Token adapters
    /// fill in what their token tells; tests start from it.
    #[must_use]
    pub const fn of(user_id: UserId) -> Self {
        Self {
            user_id,
            org_id: None,
            login_name: None,
            scopes: Vec::new(),
            client_id: None,
            authorized_party: None,
            auth_time: None,
            amr: Vec::new(),
            roles: Vec::new(),
        }
    }

    /// The account label of the otpauth URL: the login name, else the user id.
    #[must_use]
    pub fn account(&self) -> &str {
        self.login_name
            .as_ref()
            .map_or(self.user_id.as_str(), LoginName::as_str)
    }

    /// Whether the token grants `scope`.
    #[must_use]
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|granted| granted == scope)
    }

    /// Whether the token grants `role`.
    #[must_use]
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|granted| granted == role)
    }
}

/// Authenticates requests of every transport the same way.
#[derive(Clone)]
pub struct Authenticator {
    verifier: Arc<dyn TokenVerifier>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authenticator")
    }
}

impl Authenticator {
    /// Uses `verifier` for every token.
    #[must_use]
    pub fn new(verifier: Arc<dyn TokenVerifier>) -> Self {
        Self { verifier }
    }

    /// Authenticates the raw `Authorization` header value (REST header or gRPC
    /// `authorization` metadata), `None` when the request has none.
    ///
    /// # Errors
    /// [`ApplicationError::AuthHeaderMissing`] with no header;
    /// [`ApplicationError::TokenInvalid`] for anything but a valid
    /// `Bearer <token>`; [`ApplicationError::Unavailable`] when the issuer's
    /// keys cannot be fetched.
    pub async fn authenticate(&self, header: Option<&[u8]>) -> Result<Principal, ApplicationError> {
        let header = header.ok_or(ApplicationError::AuthHeaderMissing)?;
        let token = bearer_token(header).ok_or(ApplicationError::TokenInvalid)?;
        self.verifier
            .verify(&token)
            .await
            .map_err(|error| match error {
                TokenError::Invalid(reason) => {
                    tracing::info!(%reason, "bearer token rejected");
                    ApplicationError::TokenInvalid
                }
                TokenError::Unavailable(reason) => {
                    tracing::warn!(%reason, "bearer token could not be checked");
                    ApplicationError::Unavailable("Errors.Token.KeysUnavailable")
                }
            })
    }
}

/// `Bearer <token>` (scheme case-insensitive, RFC 6750 section 2.1), the token
/// made of the b64token characters only.
fn bearer_token(header: &[u8]) -> Option<SecretString> {
    let header = std::str::from_utf8(header).ok()?.trim();
    let (scheme, token) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim_start();
    let b64token = |c: char| c.is_ascii_alphanumeric() || "-._~+/=".contains(c);
    if token.is_empty() || !token.chars().all(b64token) {
        return None;
    }
    Some(SecretString::from(token))
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn bearer_header_forms() {
        let token = |h: &str| bearer_token(h.as_bytes()).map(|t| t.expose_secret().to_owned());
        assert_eq!(token("Bearer abc.def-ghi_"), Some("abc.def-ghi_".into()));
        assert_eq!(token("bearer  abc"), Some("abc".into()));
        assert_eq!(token("Basic dXNlcjpwYXNz"), None);
        assert_eq!(token("Bearer"), None);
        assert_eq!(token("Bearer "), None);
        assert_eq!(token("Bearer a b"), None);
        assert_eq!(token("abc"), None);
        assert!(bearer_token(&[0xff, 0xfe]).is_none());
    }

    #[test]
    fn account_falls_back_to_user_id() {
        let principal = Principal::of(UserId::parse("u1").unwrap());
        assert_eq!(principal.account(), "u1");
    }
}
