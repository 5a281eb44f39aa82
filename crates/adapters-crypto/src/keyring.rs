//! AES-256-GCM sealing of TOTP secrets under named keys.
//!
//! Layout of a sealed secret: 12-byte random nonce, then ciphertext and the
//! 16-byte tag. The associated data binds it to its owner and key id, so a
//! sealed secret copied to another user's row, or relabelled with another
//! key id, fails authentication instead of opening.

use std::collections::HashMap;
use std::fmt;

use aes_gcm::aead::{Aead, Generate, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use application::{CipherError, SecretCipher};
use domain::{SealedSecret, TotpSecret, UserId};

const NONCE_LEN: usize = 12;
const KEY_LEN: usize = 32;

/// Why `crypto.keys` was refused. Never echoes key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    /// No key at all.
    #[error("crypto.keys is empty: give at least one `id:base64-32-bytes` key")]
    Empty,
    /// An entry without `id:`.
    #[error("crypto.keys entry {0} is not `id:base64-32-bytes`")]
    Malformed(usize),
    /// A key id that is empty, long or has odd characters.
    #[error("crypto.keys entry {0}: the key id must be 1-64 characters of A-Z a-z 0-9 . _ -")]
    BadId(usize),
    /// Key material that is not 32 bytes of base64.
    #[error("crypto.keys entry {0} ({1:?}): the key must be base64 of exactly 32 bytes")]
    BadKey(usize, String),
    /// The same id twice.
    #[error("crypto.keys names key id {0:?} twice")]
    DuplicateId(String),
    /// A key id asked for (`keys generate --id`) that `crypto.keys` would refuse.
    #[error("the key id must be 1-64 characters of A-Z a-z 0-9 . _ -")]
    InvalidId,
}

/// The configured keys: the first seals, all open.
pub struct AesGcmCipher {
    active: String,
    keys: HashMap<String, Aes256Gcm>,
}

impl fmt::Debug for AesGcmCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<&String> = self.keys.keys().collect();
        ids.sort();
        f.debug_struct("AesGcmCipher")
            .field("active", &self.active)
            .field("key_ids", &ids)
            .finish_non_exhaustive()
    }
}

pub(crate) fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl AesGcmCipher {
    /// Parses `crypto.keys`: `id:base64-32-bytes` entries separated by commas
    /// (whitespace around entries is ignored). The first entry seals.
    ///
    /// # Errors
    /// [`KeyringError`] for an empty list, a malformed entry, a bad id, a key
    /// that is not 32 bytes, or a repeated id.
    pub fn from_config(keys: &SecretString) -> Result<Self, KeyringError> {
        let mut active = None;
        let mut ring = HashMap::new();
        let entries = keys
            .expose_secret()
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty());
        for (index, entry) in entries.enumerate() {
            let number = index + 1;
            let (id, material) = entry
                .split_once(':')
                .ok_or(KeyringError::Malformed(number))?;
            let id = id.trim();
            if !valid_id(id) {
                return Err(KeyringError::BadId(number));
            }
            let bytes = Zeroizing::new(
                data_encoding::BASE64
                    .decode(material.trim().as_bytes())
                    .map_err(|_| KeyringError::BadKey(number, id.to_owned()))?,
            );
            if bytes.len() != KEY_LEN {
                return Err(KeyringError::BadKey(number, id.to_owned()));
            }
            let cipher = Aes256Gcm::new_from_slice(&bytes)
                .map_err(|_| KeyringError::BadKey(number, id.to_owned()))?;
            if ring.insert(id.to_owned(), cipher).is_some() {
                return Err(KeyringError::DuplicateId(id.to_owned()));
            }
            active.get_or_insert_with(|| id.to_owned());
        }
        let active = active.ok_or(KeyringError::Empty)?;
        Ok(Self { active, keys: ring })
    }
}

/// Associated data: length-prefixed key id, then the owner's id.
fn associated_data(key_id: &str, owner: &UserId) -> Vec<u8> {
    let mut aad = Vec::with_capacity(8 + key_id.len() + owner.as_str().len());
    aad.extend_from_slice(b"otp1");
    aad.extend_from_slice(
        &u32::try_from(key_id.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    aad.extend_from_slice(key_id.as_bytes());
    aad.extend_from_slice(owner.as_str().as_bytes());
    aad
}

impl SecretCipher for AesGcmCipher {
    fn seal(&self, owner: &UserId, secret: &TotpSecret) -> Result<SealedSecret, CipherError> {
        let cipher = self
            .keys
            .get(&self.active)
            .ok_or_else(|| CipherError::UnknownKey(self.active.clone()))?;
        let nonce = Nonce::generate();
        let aad = associated_data(&self.active, owner);
        let ciphertext = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: secret.expose_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| CipherError::Tampered)?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        Ok(SealedSecret {
            key_id: self.active.clone(),
            sealed,
        })
    }

    /// The first configured key.
    fn active_key_id(&self) -> &str {
        &self.active
    }

    fn open(&self, owner: &UserId, sealed: &SealedSecret) -> Result<TotpSecret, CipherError> {
        let cipher = self
            .keys
            .get(&sealed.key_id)
            .ok_or_else(|| CipherError::UnknownKey(sealed.key_id.clone()))?;
        if sealed.sealed.len() < NONCE_LEN {
            return Err(CipherError::Tampered);
        }
        let (nonce, ciphertext) = sealed.sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_from(nonce).map_err(|_| CipherError::Tampered)?;
        let aad = associated_data(&sealed.key_id, owner);
        let plain = Zeroizing::new(
            cipher
                .decrypt(
                    &nonce,
                    Payload {
                        msg: ciphertext,
                        aad: &aad,
                    },
                )
                .map_err(|_| CipherError::Tampered)?,
        );
        TotpSecret::from_bytes(plain.to_vec()).map_err(|_| CipherError::Tampered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const K2: &str = "k2:Hx4dHBsaGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=";

    fn ring(keys: &str) -> AesGcmCipher {
        AesGcmCipher::from_config(&SecretString::from(keys)).unwrap()
    }

    fn user(id: &str) -> UserId {
        UserId::parse(id).unwrap()
    }

    fn secret() -> TotpSecret {
        TotpSecret::from_base32("TJOPWSDYILLHXFV4MLKNNJOWFG7VSDCK").unwrap()
    }

    #[test]
    fn seals_and_opens_with_a_fresh_nonce_each_time() {
        let ring = ring(K1);
        let (a, b) = (
            ring.seal(&user("u"), &secret()).unwrap(),
            ring.seal(&user("u"), &secret()).unwrap(),
        );
        assert_eq!(a.key_id, "k1");
        assert_eq!(a.sealed.len(), 12 + 20 + 16);
        assert_ne!(a.sealed, b.sealed, "nonce must differ");
        assert!(!a.sealed.windows(20).any(|w| w == secret().expose_bytes()));
        assert_eq!(
            ring.open(&user("u"), &a).unwrap().expose_bytes(),
            secret().expose_bytes()
        );
    }

    #[test]
    fn another_owner_or_key_id_or_bit_flip_fails() {
        let ring = ring(&format!("{K1},{K2}"));
        let sealed = ring.seal(&user("alice"), &secret()).unwrap();
        assert_eq!(
            ring.open(&user("bob"), &sealed).err(),
            Some(CipherError::Tampered)
        );
        let relabelled = SealedSecret {
            key_id: "k2".into(),
            ..sealed.clone()
        };
        assert_eq!(
            ring.open(&user("alice"), &relabelled).err(),
            Some(CipherError::Tampered)
        );
        let mut flipped = sealed.clone();
        flipped.sealed[20] ^= 1;
        assert_eq!(
            ring.open(&user("alice"), &flipped).err(),
            Some(CipherError::Tampered)
        );
        let short = SealedSecret {
            key_id: "k1".into(),
            sealed: vec![1; 5],
        };
        assert_eq!(
            ring.open(&user("alice"), &short).err(),
            Some(CipherError::Tampered)
        );
    }

    #[test]
    fn first_key_seals_and_older_keys_still_open() {
        let old = ring(K1).seal(&user("u"), &secret()).unwrap();
        let rotated = ring(&format!("{K2}, {K1}"));
        assert_eq!(rotated.active_key_id(), "k2");
        assert_eq!(rotated.seal(&user("u"), &secret()).unwrap().key_id, "k2");
        assert!(rotated.open(&user("u"), &old).is_ok());
        assert_eq!(
            ring(K2).open(&user("u"), &old).err(),
            Some(CipherError::UnknownKey("k1".into()))
        );
    }

    #[test]
    fn bad_configuration_is_refused_without_echoing_keys() {
        let err = |keys: &str| AesGcmCipher::from_config(&SecretString::from(keys)).unwrap_err();
        assert_eq!(err(""), KeyringError::Empty);
        assert_eq!(err("nocolon"), KeyringError::Malformed(1));
        assert_eq!(err(":AAAA"), KeyringError::BadId(1));
        assert_eq!(err("k1:c2hvcnQ="), KeyringError::BadKey(1, "k1".into()));
        assert_eq!(
            err(&format!("{K1},{K1}")),
            KeyringError::DuplicateId("k1".into())
        );
        let message = err("k1:c2hvcnQ=").to_string();
        assert!(!message.contains("c2hvcnQ"), "{message}");
        let debug = format!("{:?}", ring(K1));
        assert!(!debug.contains("AAECAwQF"), "{debug}");
    }
}
