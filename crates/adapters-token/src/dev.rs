//! The built-in development issuer of `otp-service dev`: an Ed25519 key pair
//! made at start, tokens signed with it, and a verifier that trusts only it.

use std::fmt;
use std::time::Duration;

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use data_encoding::{BASE64URL_NOPAD, HEXLOWER};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use secrecy::SecretString;
use serde_json::{Map, Value, json};

use domain::{LoginName, OrgId, UserId};

use crate::keys::{KeySet, KeyType, VerifyKey};
use crate::settings::{ClaimNames, TokenConfigError};
use crate::verifier::{JwtVerifier, check_common};

/// The development issuer: no IdP needed. Its key pair lives only in memory,
/// so its tokens stop working when the process ends.
pub struct DevIssuer {
    issuer: String,
    audience: String,
    kid: String,
    signing: EncodingKey,
    /// The raw 32-byte Ed25519 public key.
    public: Vec<u8>,
}

impl fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevIssuer")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl DevIssuer {
    /// Generates a fresh Ed25519 key pair for tokens with `iss` = `issuer`
    /// and `aud` = `audience`.
    ///
    /// # Errors
    /// [`TokenConfigError::InvalidSetting`] for an empty issuer or audience;
    /// [`TokenConfigError::Key`] if the key pair cannot be generated.
    pub fn generate(issuer: &str, audience: &str) -> Result<Self, TokenConfigError> {
        check_common(issuer, audience, &ClaimNames::default())?;
        let pair = Ed25519KeyPair::generate()
            .map_err(|_| TokenConfigError::Key("cannot generate an Ed25519 key pair".into()))?;
        let pkcs8 = pair
            .to_pkcs8()
            .map_err(|_| TokenConfigError::Key("cannot encode the Ed25519 key pair".into()))?;
        let public = pair.public_key().as_ref().to_vec();
        let thumb = digest(&SHA256, &public);
        let kid = format!("dev-{}", HEXLOWER.encode(&thumb.as_ref()[..8]));
        Ok(Self {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            kid,
            signing: EncodingKey::from_ed_der(pkcs8.as_ref()),
            public,
        })
    }

    /// The key id in the header of every token this issuer signs.
    #[must_use]
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWKS document (for a dev `jwks` endpoint).
    #[must_use]
    pub fn public_jwks(&self) -> Value {
        json!({ "keys": [{
            "kty": "OKP",
            "crv": "Ed25519",
            "use": "sig",
            "alg": "EdDSA",
            "kid": self.kid,
            "x": BASE64URL_NOPAD.encode(&self.public),
        }]})
    }

    /// A signed token for `sub`, with the organisation claim and
    /// `preferred_username` set when given ([`ClaimNames::default`] names),
    /// valid for `ttl` from now (`iat` and `nbf` now, `exp` now + `ttl`).
    ///
    /// # Errors
    /// [`TokenConfigError::Claim`] when `sub`, `org_id` or `login_name` would
    /// not pass verification (empty, over 200 bytes, control characters);
    /// [`TokenConfigError::Key`] if signing fails.
    pub fn issue(
        &self,
        sub: &str,
        org_id: Option<&str>,
        login_name: Option<&str>,
        ttl: Duration,
    ) -> Result<SecretString, TokenConfigError> {
        self.issue_with_roles(sub, org_id, login_name, &[], ttl)
    }

    /// [`DevIssuer::issue`] with `roles` in ZITADEL's project roles claim
    /// (`urn:zitadel:iam:org:project:roles`: `{"role": {"<org id>": ""}}`),
    /// e.g. `otp.admin` for a development administrator.
    ///
    /// # Errors
    /// As [`DevIssuer::issue`].
    pub fn issue_with_roles(
        &self,
        sub: &str,
        org_id: Option<&str>,
        login_name: Option<&str>,
        roles: &[&str],
        ttl: Duration,
    ) -> Result<SecretString, TokenConfigError> {
        let claim_error = |e: domain::IdentityError| TokenConfigError::Claim(e.to_string());
        UserId::parse(sub).map_err(claim_error)?;
        if let Some(org_id) = org_id {
            OrgId::parse(org_id).map_err(claim_error)?;
        }
        if let Some(login_name) = login_name {
            LoginName::parse(login_name).map_err(claim_error)?;
        }

        let names = ClaimNames::default();
        let now = jsonwebtoken::get_current_timestamp();
        let mut claims = Map::new();
        claims.insert("iss".into(), self.issuer.clone().into());
        claims.insert("aud".into(), self.audience.clone().into());
        claims.insert(names.user_id, sub.into());
        claims.insert("iat".into(), now.into());
        claims.insert("nbf".into(), now.into());
        claims.insert("exp".into(), now.saturating_add(ttl.as_secs()).into());
        if let Some(org_id) = org_id {
            claims.insert(names.org_id, org_id.into());
        }
        if let Some(login_name) = login_name {
            claims.insert(names.login_name, login_name.into());
        }
        if !roles.is_empty() {
            let granted: Map<String, Value> = roles
                .iter()
                .map(|role| {
                    let orgs: Map<String, Value> = org_id
                        .map(|org| (org.to_owned(), Value::from("")))
                        .into_iter()
                        .collect();
                    ((*role).to_owned(), Value::Object(orgs))
                })
                .collect();
            claims.insert(names.roles, Value::Object(granted));
        }

        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.signing)
            .map(SecretString::from)
            .map_err(|_| TokenConfigError::Key("cannot sign the development token".into()))
    }

    /// A verifier that trusts exactly this issuer's public key (a static key
    /// set, no HTTP), with the same validation rules as [`JwtVerifier::new`].
    #[must_use]
    pub fn verifier(&self, claims: ClaimNames, leeway: Duration) -> JwtVerifier {
        let key = VerifyKey {
            kid: Some(self.kid.clone()),
            alg: Some(Algorithm::EdDSA),
            key_type: KeyType::Ed25519,
            decoding: DecodingKey::from_ed_der(&self.public),
        };
        JwtVerifier::with_static_keys(
            self.issuer.clone(),
            self.audience.clone(),
            claims,
            leeway,
            KeySet::new(vec![key]),
        )
    }
}
