//! Verification keys: the allowed algorithms, JWK (RFC 7517) parsing, and
//! choosing the key for a token. Only asymmetric keys exist here: a symmetric
//! (`oct`) JWK is never loaded, so a token can never pick an HMAC secret.

use std::sync::Arc;

use data_encoding::BASE64URL_NOPAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

/// The shortest RSA modulus accepted, in bytes (2048 bits).
const MIN_RSA_MODULUS_LEN: usize = 256;

/// The header `alg` names this verifier accepts, and nothing else.
pub(crate) fn allowed_algorithm(name: &str) -> Option<Algorithm> {
    match name {
        "RS256" => Some(Algorithm::RS256),
        "RS384" => Some(Algorithm::RS384),
        "RS512" => Some(Algorithm::RS512),
        "PS256" => Some(Algorithm::PS256),
        "ES256" => Some(Algorithm::ES256),
        "ES384" => Some(Algorithm::ES384),
        "EdDSA" => Some(Algorithm::EdDSA),
        _ => None,
    }
}

/// The kind of public key, which fixes the algorithms it can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyType {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyType {
    fn accepts(self, alg: Algorithm) -> bool {
        match self {
            Self::Rsa => matches!(
                alg,
                Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 | Algorithm::PS256
            ),
            Self::P256 => alg == Algorithm::ES256,
            Self::P384 => alg == Algorithm::ES384,
            Self::Ed25519 => alg == Algorithm::EdDSA,
        }
    }
}

/// One public key that verifies signatures.
pub(crate) struct VerifyKey {
    pub(crate) kid: Option<String>,
    /// The JWK's `alg`, when it states one: then only that algorithm.
    pub(crate) alg: Option<Algorithm>,
    pub(crate) key_type: KeyType,
    pub(crate) decoding: DecodingKey,
}

impl VerifyKey {
    /// Whether a token signed with `alg` may be checked with this key.
    fn accepts(&self, alg: Algorithm) -> bool {
        self.key_type.accepts(alg) && self.alg.is_none_or(|stated| stated == alg)
    }
}

/// The key for a token, or why there is none.
pub(crate) enum Selection {
    Found(Arc<VerifyKey>),
    /// A key with the token's `kid` exists but cannot verify its `alg`.
    AlgorithmMismatch,
    /// No key with the token's `kid` (or, without `kid`, no key at all).
    NotFound,
    /// No `kid` in the token and more than one key to choose from.
    Ambiguous,
}

/// A set of verification keys (a parsed JWKS).
#[derive(Default)]
pub(crate) struct KeySet {
    keys: Vec<Arc<VerifyKey>>,
}

impl KeySet {
    pub(crate) fn new(keys: Vec<VerifyKey>) -> Self {
        Self {
            keys: keys.into_iter().map(Arc::new).collect(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key for a token with header `kid` and `alg`.
    pub(crate) fn select(&self, kid: Option<&str>, alg: Algorithm) -> Selection {
        match kid {
            Some(kid) => {
                let mut named = self
                    .keys
                    .iter()
                    .filter(|key| key.kid.as_deref() == Some(kid))
                    .peekable();
                if named.peek().is_none() {
                    return Selection::NotFound;
                }
                named
                    .find(|key| key.accepts(alg))
                    .map_or(Selection::AlgorithmMismatch, |key| {
                        Selection::Found(Arc::clone(key))
                    })
            }
            None => match self.keys.as_slice() {
                [] => Selection::NotFound,
                [only] if only.accepts(alg) => Selection::Found(Arc::clone(only)),
                [_] => Selection::AlgorithmMismatch,
                _ => Selection::Ambiguous,
            },
        }
    }
}

/// Parses a JWKS document. Keys that cannot verify one of the allowed
/// algorithms (symmetric, encryption-only, unknown type or curve, short RSA)
/// are skipped; a set without any usable key is an error.
pub(crate) fn parse_jwks(body: &[u8]) -> Result<KeySet, String> {
    let document: Value =
        serde_json::from_slice(body).map_err(|_| "the JWKS is not JSON".to_owned())?;
    let entries = document
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| "the JWKS has no `keys` array".to_owned())?;
    let mut keys = Vec::new();
    for entry in entries {
        match parse_jwk(entry) {
            Ok(key) => keys.push(key),
            Err(reason) => {
                let kid = entry.get("kid").and_then(Value::as_str).unwrap_or("");
                tracing::debug!(kid, reason, "JWK skipped");
            }
        }
    }
    if keys.is_empty() {
        return Err("the JWKS has no usable signing key".to_owned());
    }
    Ok(KeySet::new(keys))
}

/// An optional string member; present but not a string is an error.
fn text<'a>(jwk: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, &'static str> {
    match jwk.get(name) {
        None => Ok(None),
        Some(Value::String(value)) => Ok(Some(value)),
        Some(_) => Err("a member is not a string"),
    }
}

fn bytes(jwk: &Map<String, Value>, name: &str) -> Result<Vec<u8>, &'static str> {
    let value = text(jwk, name)?.ok_or("a key parameter is missing")?;
    BASE64URL_NOPAD
        .decode(value.trim_end_matches('=').as_bytes())
        .map_err(|_| "a key parameter is not base64url")
}

fn parse_jwk(entry: &Value) -> Result<VerifyKey, &'static str> {
    let jwk = entry.as_object().ok_or("not a JSON object")?;
    if text(jwk, "use")?.is_some_and(|usage| usage != "sig") {
        return Err("not a signature key");
    }
    if let Some(ops) = jwk.get("key_ops") {
        let verifies = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op.as_str() == Some("verify")));
        if !verifies {
            return Err("key_ops does not allow verify");
        }
    }
    let alg = match text(jwk, "alg")? {
        Some(name) => Some(allowed_algorithm(name).ok_or("algorithm not allowed")?),
        None => None,
    };
    let kid = text(jwk, "kid")?.map(str::to_owned);
    let (key_type, decoding) = match text(jwk, "kty")?.ok_or("no kty")? {
        "RSA" => {
            let n = bytes(jwk, "n")?;
            let e = bytes(jwk, "e")?;
            let significant = n.iter().skip_while(|b| **b == 0).count();
            if significant < MIN_RSA_MODULUS_LEN {
                return Err("RSA key shorter than 2048 bits");
            }
            if e.is_empty() {
                return Err("RSA exponent is empty");
            }
            (KeyType::Rsa, DecodingKey::from_rsa_raw_components(&n, &e))
        }
        "EC" => {
            let (key_type, len) = match text(jwk, "crv")? {
                Some("P-256") => (KeyType::P256, 32),
                Some("P-384") => (KeyType::P384, 48),
                _ => return Err("unsupported EC curve"),
            };
            let x = bytes(jwk, "x")?;
            let y = bytes(jwk, "y")?;
            if x.len() != len || y.len() != len {
                return Err("EC coordinates of the wrong length");
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (key_type, DecodingKey::from_ec_der(&point))
        }
        "OKP" => {
            if text(jwk, "crv")? != Some("Ed25519") {
                return Err("unsupported OKP curve");
            }
            let x = bytes(jwk, "x")?;
            if x.len() != 32 {
                return Err("Ed25519 key of the wrong length");
            }
            (KeyType::Ed25519, DecodingKey::from_ed_der(&x))
        }
        _ => return Err("unsupported key type"),
    };
    if alg.is_some_and(|alg| !key_type.accepts(alg)) {
        return Err("the stated alg does not fit the key type");
    }
    Ok(VerifyKey {
        kid,
        alg,
        key_type,
        decoding,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn b64(bytes: &[u8]) -> String {
        BASE64URL_NOPAD.encode(bytes)
    }

    fn rsa(kid: &str) -> Value {
        let mut n = vec![0xc5_u8; 256];
        n[255] = 0x01;
        json!({"kty": "RSA", "kid": kid, "n": b64(&n), "e": "AQAB"})
    }

    fn parse(keys: Value) -> Result<KeySet, String> {
        parse_jwks(json!({ "keys": keys }).to_string().as_bytes())
    }

    #[test]
    fn symmetric_and_unusable_keys_are_skipped() {
        let set = parse(json!([
            {"kty": "oct", "kid": "h", "k": b64(b"secret")},
            {"kty": "RSA", "kid": "short", "n": b64(&[0xc5; 128]), "e": "AQAB"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": b64(&[0xc5; 256]), "e": "AQAB"},
            {"kty": "RSA", "kid": "hs", "alg": "HS256", "n": b64(&[0xc5; 256]), "e": "AQAB"},
            {"kty": "EC", "kid": "p521", "crv": "P-521", "x": b64(&[1; 66]), "y": b64(&[1; 66])},
            {"kty": "EC", "kid": "badlen", "crv": "P-256", "x": b64(&[1; 31]), "y": b64(&[1; 32])},
            {"kty": "OKP", "kid": "x448", "crv": "X448", "x": b64(&[1; 56])},
            {"kty": "RSA", "kid": "es", "alg": "ES256", "n": b64(&[0xc5; 256]), "e": "AQAB"},
            rsa("good"),
        ]))
        .unwrap();
        assert_eq!(set.len(), 1);
        assert!(matches!(
            set.select(Some("good"), Algorithm::RS256),
            Selection::Found(_)
        ));
        assert!(matches!(
            set.select(Some("h"), Algorithm::HS256),
            Selection::NotFound
        ));
    }

    #[test]
    fn a_set_without_usable_keys_is_an_error() {
        assert!(parse(json!([{"kty": "oct", "k": b64(b"secret")}])).is_err());
        assert!(parse(json!([])).is_err());
        assert!(parse_jwks(b"{}").is_err());
        assert!(parse_jwks(b"not json").is_err());
    }

    #[test]
    fn selection_by_kid_and_algorithm() {
        let set = parse(json!([rsa("a"), {
            "kty": "OKP", "crv": "Ed25519", "kid": "e", "alg": "EdDSA", "x": b64(&[7; 32])
        }]))
        .unwrap();
        assert!(matches!(
            set.select(Some("a"), Algorithm::PS256),
            Selection::Found(_)
        ));
        assert!(matches!(
            set.select(Some("a"), Algorithm::ES256),
            Selection::AlgorithmMismatch
        ));
        assert!(matches!(
            set.select(Some("e"), Algorithm::RS256),
            Selection::AlgorithmMismatch
        ));
        assert!(matches!(
            set.select(Some("zz"), Algorithm::RS256),
            Selection::NotFound
        ));
        assert!(matches!(
            set.select(None, Algorithm::RS256),
            Selection::Ambiguous
        ));

        let single = parse(json!([rsa("a")])).unwrap();
        assert!(matches!(
            single.select(None, Algorithm::RS256),
            Selection::Found(_)
        ));
        assert!(matches!(
            single.select(None, Algorithm::EdDSA),
            Selection::AlgorithmMismatch
        ));
        assert!(matches!(
            KeySet::default().select(None, Algorithm::RS256),
            Selection::NotFound
        ));
    }

    #[test]
    fn only_asymmetric_algorithms_are_allowed() {
        for name in [
            "RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA",
        ] {
            assert!(allowed_algorithm(name).is_some(), "{name}");
        }
        for name in [
            "none", "None", "HS256", "HS384", "HS512", "PS384", "", "rs256",
        ] {
            assert!(allowed_algorithm(name).is_none(), "{name}");
        }
    }
}
