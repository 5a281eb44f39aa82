//! AES-256-GCM sealing of TOTP secrets under named keys.
//!
//! Layout of a sealed secret (format 2, "bound"): the 4-byte marker
//! `OTP\x02`, a 12-byte random nonce, then ciphertext and the 16-byte tag.
//! The associated data binds it to the key id, its owner, and the factor it
//! belongs to: algorithm, digits, period, skew and creation time. A sealed
//! secret copied to another user's row, put back into a later factor of the
//! same user, relabelled with another key id, or stored beside downgraded
//! parameters fails authentication instead of opening.
//!
//! Format 1 ("unbound", written before this format existed): nonce,
//! ciphertext and tag, bound only to key id and owner. It opens only when
//! `crypto.accept_unbound` is set, and always for `keys rotate`, which
//! re-seals it in format 2. The marker only picks which format to try
//! first: a format 1 secret whose random nonce happens to start with it
//! still opens as format 1 (when accepted), since authentication decides.

use std::collections::HashMap;
use std::fmt;

use aes_gcm::aead::{Aead, Generate, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use application::{CipherError, OpenedSecret, SealBinding, SecretCipher};
use domain::{SealedSecret, TotpSecret, UserId};

const NONCE_LEN: usize = 12;
const KEY_LEN: usize = 32;
/// Leads every sealed secret of the bound format.
const BOUND_MARKER: &[u8; 4] = b"OTP\x02";

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
    pub(crate) active: String,
    keys: HashMap<String, Aes256Gcm>,
    accept_unbound: bool,
    /// Per key id, the HMAC key of recovery-code hashes derived from it.
    pub(crate) recovery_keys: HashMap<String, crate::recovery::HashKey>,
}

impl fmt::Debug for AesGcmCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<&String> = self.keys.keys().collect();
        ids.sort();
        f.debug_struct("AesGcmCipher")
            .field("active", &self.active)
            .field("key_ids", &ids)
            .field("accept_unbound", &self.accept_unbound)
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
        let mut recovery_keys = HashMap::new();
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
            recovery_keys.insert(id.to_owned(), crate::recovery::HashKey::derive(&bytes));
            active.get_or_insert_with(|| id.to_owned());
        }
        let active = active.ok_or(KeyringError::Empty)?;
        Ok(Self {
            active,
            keys: ring,
            accept_unbound: false,
            recovery_keys,
        })
    }

    /// Whether [`SecretCipher::open`] also opens secrets of the earlier
    /// unbound format (`crypto.accept_unbound`): only while `keys rotate`
    /// has not re-sealed them yet, since a database writer could put back
    /// an older unbound secret of the same user. Off by default.
    #[must_use]
    pub const fn accepting_unbound(mut self, accept: bool) -> Self {
        self.accept_unbound = accept;
        self
    }

    fn key(&self, id: &str) -> Result<&Aes256Gcm, CipherError> {
        self.keys
            .get(id)
            .ok_or_else(|| CipherError::UnknownKey(id.to_owned()))
    }

    /// Opens `sealed` in whichever format authenticates; answers whether it
    /// was the bound one.
    fn open_either(
        &self,
        binding: &SealBinding<'_>,
        sealed: &SealedSecret,
        accept_unbound: bool,
    ) -> Result<(TotpSecret, bool), CipherError> {
        let cipher = self.key(&sealed.key_id)?;
        if let Some(body) = sealed.sealed.strip_prefix(BOUND_MARKER.as_slice()) {
            let aad = bound_associated_data(&sealed.key_id, binding);
            if let Ok(secret) = decrypt(cipher, body, &aad) {
                return Ok((secret, true));
            }
        }
        let unbound = decrypt(
            cipher,
            &sealed.sealed,
            &unbound_associated_data(&sealed.key_id, binding.owner),
        );
        match unbound {
            Ok(_) if !accept_unbound => Err(CipherError::Unbound),
            Ok(secret) => Ok((secret, false)),
            Err(error) => Err(error),
        }
    }
}

/// Opens nonce-then-ciphertext `body` with `aad`.
fn decrypt(cipher: &Aes256Gcm, body: &[u8], aad: &[u8]) -> Result<TotpSecret, CipherError> {
    if body.len() < NONCE_LEN {
        return Err(CipherError::Tampered);
    }
    let (nonce, ciphertext) = body.split_at(NONCE_LEN);
    let nonce = Nonce::try_from(nonce).map_err(|_| CipherError::Tampered)?;
    let plain = Zeroizing::new(
        cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map_err(|_| CipherError::Tampered)?,
    );
    TotpSecret::from_stored_bytes(plain.to_vec()).map_err(|_| CipherError::Tampered)
}

/// Appends `bytes` with its length in front, so no two field splits give
/// the same associated data.
fn push_field(aad: &mut Vec<u8>, bytes: &[u8]) {
    aad.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
    aad.extend_from_slice(bytes);
}

/// Associated data of format 1: length-prefixed key id, then the owner's id.
fn unbound_associated_data(key_id: &str, owner: &UserId) -> Vec<u8> {
    let mut aad = Vec::with_capacity(8 + key_id.len() + owner.as_str().len());
    aad.extend_from_slice(b"otp1");
    push_field(&mut aad, key_id.as_bytes());
    aad.extend_from_slice(owner.as_str().as_bytes());
    aad
}

/// Associated data of format 2: key id and owner (length-prefixed), then
/// algorithm, digits, period, skew and the creation time in microseconds
/// since the Unix epoch (the precision the stores keep).
fn bound_associated_data(key_id: &str, binding: &SealBinding<'_>) -> Vec<u8> {
    let owner = binding.owner.as_str();
    let params = binding.params;
    let mut aad = Vec::with_capacity(40 + key_id.len() + owner.len());
    aad.extend_from_slice(b"otp2");
    push_field(&mut aad, key_id.as_bytes());
    push_field(&mut aad, owner.as_bytes());
    push_field(&mut aad, params.algorithm().as_str().as_bytes());
    aad.push(params.digits());
    aad.extend_from_slice(&params.period().to_be_bytes());
    aad.push(params.skew());
    aad.extend_from_slice(&binding.created_at.timestamp_micros().to_be_bytes());
    aad
}

impl SecretCipher for AesGcmCipher {
    fn seal(
        &self,
        binding: &SealBinding<'_>,
        secret: &TotpSecret,
    ) -> Result<SealedSecret, CipherError> {
        let cipher = self.key(&self.active)?;
        let nonce = Nonce::generate();
        let aad = bound_associated_data(&self.active, binding);
        let ciphertext = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: secret.expose_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| CipherError::Tampered)?;
        let mut sealed = Vec::with_capacity(BOUND_MARKER.len() + NONCE_LEN + ciphertext.len());
        sealed.extend_from_slice(BOUND_MARKER);
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

    fn open(
        &self,
        binding: &SealBinding<'_>,
        sealed: &SealedSecret,
    ) -> Result<TotpSecret, CipherError> {
        self.open_either(binding, sealed, self.accept_unbound)
            .map(|(secret, _)| secret)
    }

    fn open_for_rotation(
        &self,
        binding: &SealBinding<'_>,
        sealed: &SealedSecret,
    ) -> Result<OpenedSecret, CipherError> {
        let (secret, bound) = self.open_either(binding, sealed, true)?;
        Ok(OpenedSecret {
            secret,
            current: bound && sealed.key_id == self.active,
        })
    }
}

/// Seals `secret` in format 1, as versions before the bound format did: for
/// tests of the migration path only.
#[doc(hidden)]
pub fn seal_unbound_for_tests(
    keys: &SecretString,
    owner: &UserId,
    secret: &TotpSecret,
) -> Result<SealedSecret, CipherError> {
    let ring = AesGcmCipher::from_config(keys).map_err(|_| CipherError::Tampered)?;
    let cipher = ring.key(&ring.active)?;
    let nonce = Nonce::generate();
    let ciphertext = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: secret.expose_bytes(),
                aad: &unbound_associated_data(&ring.active, owner),
            },
        )
        .map_err(|_| CipherError::Tampered)?;
    let mut sealed = nonce.to_vec();
    sealed.extend_from_slice(&ciphertext);
    Ok(SealedSecret {
        key_id: ring.active.clone(),
        sealed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use domain::{TotpAlgorithm, TotpParams};

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

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap()
    }

    fn bound(owner: &UserId) -> SealBinding<'_> {
        SealBinding {
            owner,
            params: TotpParams::default(),
            created_at: at(),
        }
    }

    #[test]
    fn seals_and_opens_with_a_fresh_nonce_each_time() {
        let ring = ring(K1);
        let (a, b) = (
            ring.seal(&bound(&user("u")), &secret()).unwrap(),
            ring.seal(&bound(&user("u")), &secret()).unwrap(),
        );
        assert_eq!(a.key_id, "k1");
        assert_eq!(a.sealed.len(), 4 + 12 + 20 + 16);
        assert!(a.sealed.starts_with(b"OTP\x02"));
        assert_ne!(a.sealed, b.sealed, "nonce must differ");
        assert!(!a.sealed.windows(20).any(|w| w == secret().expose_bytes()));
        assert_eq!(
            ring.open(&bound(&user("u")), &a).unwrap().expose_bytes(),
            secret().expose_bytes()
        );
    }

    #[test]
    fn another_owner_or_key_id_or_bit_flip_fails() {
        let ring = ring(&format!("{K1},{K2}"));
        let sealed = ring.seal(&bound(&user("alice")), &secret()).unwrap();
        assert_eq!(
            ring.open(&bound(&user("bob")), &sealed).err(),
            Some(CipherError::Tampered)
        );
        let relabelled = SealedSecret {
            key_id: "k2".into(),
            ..sealed.clone()
        };
        assert_eq!(
            ring.open(&bound(&user("alice")), &relabelled).err(),
            Some(CipherError::Tampered)
        );
        let mut flipped = sealed.clone();
        flipped.sealed[24] ^= 1;
        assert_eq!(
            ring.open(&bound(&user("alice")), &flipped).err(),
            Some(CipherError::Tampered)
        );
        let short = SealedSecret {
            key_id: "k1".into(),
            sealed: vec![1; 5],
        };
        assert_eq!(
            ring.open(&bound(&user("alice")), &short).err(),
            Some(CipherError::Tampered)
        );
    }

    #[test]
    fn first_key_seals_and_older_keys_still_open() {
        let old = ring(K1).seal(&bound(&user("u")), &secret()).unwrap();
        let rotated = ring(&format!("{K2}, {K1}"));
        assert_eq!(rotated.active_key_id(), "k2");
        assert_eq!(
            rotated.seal(&bound(&user("u")), &secret()).unwrap().key_id,
            "k2"
        );
        assert!(rotated.open(&bound(&user("u")), &old).is_ok());
        assert_eq!(
            ring(K2).open(&bound(&user("u")), &old).err(),
            Some(CipherError::UnknownKey("k1".into()))
        );
    }

    #[test]
    fn moved_parameters_or_creation_time_fail_to_open() {
        let ring = ring(K1);
        let owner = user("alice");
        let sealed = ring.seal(&bound(&owner), &secret()).unwrap();
        let moved = [
            SealBinding {
                params: TotpParams::new(TotpAlgorithm::Sha1, 8, 30, 1).unwrap(),
                ..bound(&owner)
            },
            SealBinding {
                params: TotpParams::new(TotpAlgorithm::Sha1, 6, 60, 1).unwrap(),
                ..bound(&owner)
            },
            SealBinding {
                params: TotpParams::new(TotpAlgorithm::Sha1, 6, 30, 2).unwrap(),
                ..bound(&owner)
            },
            SealBinding {
                params: TotpParams::new(TotpAlgorithm::Sha256, 6, 30, 1).unwrap(),
                ..bound(&owner)
            },
            SealBinding {
                created_at: at() + chrono::TimeDelta::microseconds(1),
                ..bound(&owner)
            },
        ];
        for binding in moved {
            assert_eq!(
                ring.open(&binding, &sealed).err(),
                Some(CipherError::Tampered),
                "{binding:?}"
            );
        }
        assert!(ring.open(&bound(&owner), &sealed).is_ok());
    }

    #[test]
    fn unbound_secrets_open_only_when_accepted_and_always_for_rotation() {
        let owner = user("alice");
        let old = seal_unbound_for_tests(&SecretString::from(K1), &owner, &secret()).unwrap();
        assert_eq!(old.sealed.len(), 12 + 20 + 16);
        let strict = ring(K1);
        assert_eq!(
            strict.open(&bound(&owner), &old).err(),
            Some(CipherError::Unbound)
        );
        let opened = strict.open_for_rotation(&bound(&owner), &old).unwrap();
        assert!(!opened.current, "an unbound secret needs re-sealing");
        assert_eq!(opened.secret.expose_bytes(), secret().expose_bytes());
        // Unbound still means bound to the owner.
        assert_eq!(
            strict.open_for_rotation(&bound(&user("bob")), &old).err(),
            Some(CipherError::Tampered)
        );
        let lenient = ring(K1).accepting_unbound(true);
        assert_eq!(
            lenient.open(&bound(&owner), &old).unwrap().expose_bytes(),
            secret().expose_bytes()
        );
        // A format 1 secret whose random nonce happens to start like the
        // marker still opens as format 1.
        let mut nonce_bytes = [7_u8; NONCE_LEN];
        nonce_bytes[..BOUND_MARKER.len()].copy_from_slice(BOUND_MARKER);
        let nonce = Nonce::from(nonce_bytes);
        let mut forged = nonce.to_vec();
        forged.extend_from_slice(
            &lenient
                .key("k1")
                .unwrap()
                .encrypt(
                    &nonce,
                    Payload {
                        msg: secret().expose_bytes(),
                        aad: &unbound_associated_data("k1", &owner),
                    },
                )
                .unwrap(),
        );
        let lookalike = SealedSecret {
            key_id: "k1".into(),
            sealed: forged,
        };
        assert!(lookalike.sealed.starts_with(BOUND_MARKER));
        assert!(lenient.open(&bound(&owner), &lookalike).is_ok());
        assert!(
            !strict
                .open_for_rotation(&bound(&owner), &lookalike)
                .unwrap()
                .current
        );
    }

    #[test]
    fn rotation_sees_current_only_under_the_active_key_bound() {
        let owner = user("u");
        let old = ring(K1).seal(&bound(&owner), &secret()).unwrap();
        let rotated = ring(&format!("{K2}, {K1}"));
        assert!(
            !rotated
                .open_for_rotation(&bound(&owner), &old)
                .unwrap()
                .current
        );
        assert!(
            ring(K1)
                .open_for_rotation(&bound(&owner), &old)
                .unwrap()
                .current
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
