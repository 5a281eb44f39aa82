//! How this service authenticates itself to the introspection endpoint:
//! HTTP Basic with a client secret (RFC 6749 §2.3.1) or a signed client
//! assertion, `private_key_jwt` (RFC 7523 §2.2, OpenID Connect Core §9).

use std::path::Path;

use data_encoding::{BASE64, HEXLOWER};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use zeroize::Zeroizing;

use crate::settings::TokenConfigError;

/// The `client_assertion_type` of a JWT client assertion (RFC 7523 §2.2).
const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long a client assertion is valid, in seconds.
const ASSERTION_LIFETIME_SECS: u64 = 60;

/// The largest key file read, in bytes.
const MAX_KEY_FILE_LEN: u64 = 64 * 1024;

/// This service's credentials at the introspection endpoint. `Debug` shows
/// the client and key ids, never the secret or the key (both are
/// `SecretString`s, whose `Debug` redacts).
#[derive(Clone, Debug)]
pub enum ClientAuth {
    /// `client_secret_basic`: `Authorization: Basic` with the client id and
    /// secret, each form-url-encoded first (RFC 6749 §2.3.1).
    Basic {
        /// The client id.
        client_id: String,
        /// The client secret.
        client_secret: SecretString,
    },
    /// `private_key_jwt`: an RS256 client assertion signed with the client's
    /// key, sent as `client_assertion` (RFC 7523). Its `iss` and `sub` are
    /// the client id, its `aud` the issuer (what ZITADEL expects), it lives
    /// 60 s and carries a fresh `jti`; the header's `kid` is `key_id`.
    PrivateKeyJwt {
        /// The client id.
        client_id: String,
        /// The id of the key at the issuer (the assertion's `kid`).
        key_id: String,
        /// The RSA private key, PEM (PKCS#1 or PKCS#8).
        private_key_pem: SecretString,
    },
}

/// ZITADEL's JSON key file of an API application.
#[derive(Deserialize)]
struct ZitadelKeyFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(rename = "keyId")]
    key_id: Option<String>,
    key: Option<SecretString>,
    #[serde(rename = "clientId")]
    client_id: Option<String>,
}

impl ClientAuth {
    /// `private_key_jwt` credentials from the JSON key file ZITADEL hands out
    /// for an API application:
    /// `{"type":"application","keyId":"..","key":"-----BEGIN RSA PRIVATE KEY-----..","appId":"..","clientId":".."}`.
    ///
    /// # Errors
    /// [`TokenConfigError::Key`] when the file cannot be read, is not such a
    /// key file (another `type`, a member missing or empty), or its key is
    /// not an RSA private key. The message names the file, never the key.
    pub fn from_zitadel_key_file(path: impl AsRef<Path>) -> Result<Self, TokenConfigError> {
        let path = path.as_ref();
        let fail = |why: &str| TokenConfigError::Key(format!("key file {}: {why}", path.display()));
        let len = std::fs::metadata(path)
            .map_err(|e| fail(&format!("cannot read it: {}", e.kind())))?
            .len();
        if len > MAX_KEY_FILE_LEN {
            return Err(fail("larger than 64 KiB, not a key file"));
        }
        let text = Zeroizing::new(
            std::fs::read(path).map_err(|e| fail(&format!("cannot read it: {}", e.kind())))?,
        );
        // serde_json's message could quote the file; only its position is kept.
        let file: ZitadelKeyFile = serde_json::from_slice(&text).map_err(|e| {
            fail(&format!(
                "not a JSON key file (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        match file.kind.as_deref() {
            Some("application") => {}
            Some("serviceaccount") => {
                return Err(fail(
                    "a service account key; introspection needs an API application's key",
                ));
            }
            _ => return Err(fail("\"type\" is not \"application\"")),
        }
        let non_empty = |value: Option<String>, name: &str| {
            value
                .filter(|value| !value.trim().is_empty())
                .ok_or_else(|| fail(&format!("\"{name}\" is missing or empty")))
        };
        let client_id = non_empty(file.client_id, "clientId")?;
        let key_id = non_empty(file.key_id, "keyId")?;
        let private_key_pem = file.key.ok_or_else(|| fail("\"key\" is missing"))?;
        signing_key(&private_key_pem).map_err(fail)?;
        Ok(Self::PrivateKeyJwt {
            client_id,
            key_id,
            private_key_pem,
        })
    }
}

/// An RSA private key that can sign, checked by signing once.
fn signing_key(pem: &SecretString) -> Result<EncodingKey, &'static str> {
    let key = EncodingKey::from_rsa_pem(pem.expose_secret().as_bytes())
        .map_err(|_| "the key is not an RSA private key in PEM")?;
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &json!({}), &key)
        .map_err(|_| "the key cannot sign RS256")?;
    Ok(key)
}

/// Ready-to-use credentials: the Basic header, or the signing key.
pub(crate) enum Credentials {
    Basic {
        client_id: String,
        /// The whole `Authorization` header value.
        header: SecretString,
    },
    PrivateKeyJwt {
        client_id: String,
        key_id: String,
        key: EncodingKey,
        /// The assertion's `aud`: the issuer.
        audience: String,
    },
}

/// What a request carries to authenticate the client.
pub(crate) struct Presented {
    /// The `Authorization` header, marked sensitive.
    pub(crate) authorization: Option<HeaderValue>,
    /// Extra form fields (the client assertion).
    pub(crate) form: Vec<(&'static str, SecretString)>,
}

fn form_encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

impl Credentials {
    /// Checks `auth` and prepares it; `issuer` is the assertion's audience.
    pub(crate) fn new(auth: &ClientAuth, issuer: &str) -> Result<Self, TokenConfigError> {
        match auth {
            ClientAuth::Basic {
                client_id,
                client_secret,
            } => {
                if client_id.trim().is_empty() {
                    return Err(TokenConfigError::InvalidSetting(
                        "the introspection client id is empty".into(),
                    ));
                }
                if client_secret.expose_secret().is_empty() {
                    return Err(TokenConfigError::InvalidSetting(
                        "the introspection client secret is empty".into(),
                    ));
                }
                let pair = Zeroizing::new(format!(
                    "{}:{}",
                    form_encode(client_id),
                    Zeroizing::new(form_encode(client_secret.expose_secret())).as_str()
                ));
                let header =
                    SecretString::from(format!("Basic {}", BASE64.encode(pair.as_bytes())));
                Ok(Self::Basic {
                    client_id: client_id.clone(),
                    header,
                })
            }
            ClientAuth::PrivateKeyJwt {
                client_id,
                key_id,
                private_key_pem,
            } => {
                if client_id.trim().is_empty() {
                    return Err(TokenConfigError::InvalidSetting(
                        "the introspection client id is empty".into(),
                    ));
                }
                if key_id.trim().is_empty() {
                    return Err(TokenConfigError::InvalidSetting(
                        "the introspection key id is empty".into(),
                    ));
                }
                let key = signing_key(private_key_pem).map_err(|why| {
                    TokenConfigError::Key(format!("introspection client key: {why}"))
                })?;
                Ok(Self::PrivateKeyJwt {
                    client_id: client_id.clone(),
                    key_id: key_id.clone(),
                    key,
                    audience: issuer.to_owned(),
                })
            }
        }
    }

    /// The client id, for logs.
    pub(crate) fn client_id(&self) -> &str {
        match self {
            Self::Basic { client_id, .. } | Self::PrivateKeyJwt { client_id, .. } => client_id,
        }
    }

    /// The credentials for one request made at `now` (seconds since the epoch).
    pub(crate) fn present(&self, now: u64) -> Result<Presented, String> {
        match self {
            Self::Basic { header, .. } => {
                let mut value = HeaderValue::from_str(header.expose_secret())
                    .map_err(|_| "the Basic credentials are not a valid header".to_owned())?;
                value.set_sensitive(true);
                Ok(Presented {
                    authorization: Some(value),
                    form: Vec::new(),
                })
            }
            Self::PrivateKeyJwt {
                client_id,
                key_id,
                key,
                audience,
            } => {
                let mut jti = [0_u8; 16];
                aws_lc_rs::rand::fill(&mut jti)
                    .map_err(|_| "no randomness for the client assertion".to_owned())?;
                let claims = json!({
                    "iss": client_id,
                    "sub": client_id,
                    "aud": audience,
                    "iat": now,
                    "exp": now.saturating_add(ASSERTION_LIFETIME_SECS),
                    "jti": HEXLOWER.encode(&jti),
                });
                let mut header = Header::new(Algorithm::RS256);
                header.kid = Some(key_id.clone());
                let assertion = jsonwebtoken::encode(&header, &claims, key)
                    .map_err(|_| "cannot sign the client assertion".to_owned())?;
                Ok(Presented {
                    authorization: None,
                    form: vec![
                        (
                            "client_assertion_type",
                            SecretString::from(JWT_BEARER_ASSERTION),
                        ),
                        ("client_assertion", SecretString::from(assertion)),
                    ],
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_encoded_before_base64() {
        let auth = ClientAuth::Basic {
            client_id: "my app@acme".into(),
            client_secret: SecretString::from("p:ss+w/rd é"),
        };
        let credentials = Credentials::new(&auth, "https://issuer").unwrap();
        let presented = credentials.present(0).unwrap();
        let header = presented.authorization.unwrap();
        assert!(header.is_sensitive());
        let encoded = header.to_str().unwrap().strip_prefix("Basic ").unwrap();
        let decoded = String::from_utf8(BASE64.decode(encoded.as_bytes()).unwrap()).unwrap();
        assert_eq!(decoded, "my+app%40acme:p%3Ass%2Bw%2Frd+%C3%A9");
        assert!(presented.form.is_empty());
    }

    #[test]
    fn debug_shows_ids_but_no_secret_or_key() {
        let basic = ClientAuth::Basic {
            client_id: "otp-api".into(),
            client_secret: SecretString::from("s3cr3t-value"),
        };
        let key = ClientAuth::PrivateKeyJwt {
            client_id: "otp-api".into(),
            key_id: "kid-7".into(),
            private_key_pem: SecretString::from("-----BEGIN PRIVATE KEY-----MIIB"),
        };
        for (auth, shown) in [(basic, "otp-api"), (key, "kid-7")] {
            let debug = format!("{auth:?}");
            assert!(debug.contains(shown), "{debug}");
            assert!(
                !debug.contains("s3cr3t") && !debug.contains("MIIB"),
                "{debug}"
            );
        }
    }

    #[test]
    fn empty_credentials_are_refused() {
        let no_id = ClientAuth::Basic {
            client_id: " ".into(),
            client_secret: SecretString::from("s"),
        };
        let no_secret = ClientAuth::Basic {
            client_id: "c".into(),
            client_secret: SecretString::from(""),
        };
        for auth in [no_id, no_secret] {
            assert!(matches!(
                Credentials::new(&auth, "https://issuer"),
                Err(TokenConfigError::InvalidSetting(_))
            ));
        }
    }
}
