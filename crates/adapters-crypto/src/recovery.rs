//! Recovery-code hashes: HMAC-SHA256 under a key derived from each keyring
//! key (so `crypto.keys` rotation covers them: a set hashed under a retired
//! key verifies while that key is configured, and a new set is hashed under
//! the active key), over the owner and the code's canonical form, compared
//! in constant time against every stored hash.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};
use zeroize::Zeroizing;

use application::{CipherError, RecoveryCodeHasher};
use domain::{RecoveryCode, RecoveryCodes, RecoveryHash, SubmittedRecoveryCode, UserId};

use crate::keyring::AesGcmCipher;
use crate::random::fill_random;

type HmacSha256 = Hmac<Sha256>;

/// Separates the derived key from every other use of the keyring key.
const DERIVATION_LABEL: &[u8] = b"otp-service recovery-code hash key v1";

/// The HMAC key of one keyring key.
pub(crate) struct HashKey(Zeroizing<[u8; 32]>);

impl HashKey {
    /// `HMAC-SHA256(keyring key, label)`: never the sealing key itself.
    pub(crate) fn derive(keyring_key: &[u8]) -> Self {
        let mut key = Zeroizing::new([0_u8; 32]);
        if let Ok(mut mac) = HmacSha256::new_from_slice(keyring_key) {
            mac.update(DERIVATION_LABEL);
            key.copy_from_slice(&mac.finalize().into_bytes());
        }
        Self(key)
    }

    fn hash(&self, owner: &UserId, canonical: &str) -> RecoveryHash {
        let mut out = [0_u8; 32];
        if let Ok(mut mac) = HmacSha256::new_from_slice(self.0.as_ref()) {
            // Length-prefixed owner: the same code of another user hashes
            // differently, so a hash copied between users matches nothing.
            let owner = owner.as_str().as_bytes();
            mac.update(&u64::try_from(owner.len()).unwrap_or(u64::MAX).to_be_bytes());
            mac.update(owner);
            mac.update(canonical.as_bytes());
            out.copy_from_slice(&mac.finalize().into_bytes());
        }
        RecoveryHash(out)
    }
}

impl AesGcmCipher {
    fn hash_key(&self, key_id: &str) -> Result<&HashKey, CipherError> {
        self.recovery_keys
            .get(key_id)
            .ok_or_else(|| CipherError::UnknownKey(key_id.to_owned()))
    }
}

impl RecoveryCodeHasher for AesGcmCipher {
    fn generate(&self) -> RecoveryCode {
        let mut random = Zeroizing::new([0_u8; domain::recovery::SYMBOLS]);
        fill_random(random.as_mut());
        RecoveryCode::from_random(&random)
    }

    fn recovery_key_id(&self) -> &str {
        &self.active
    }

    fn hash(
        &self,
        key_id: &str,
        owner: &UserId,
        code: &RecoveryCode,
    ) -> Result<RecoveryHash, CipherError> {
        Ok(self.hash_key(key_id)?.hash(owner, &code.canonical()))
    }

    fn position(
        &self,
        owner: &UserId,
        codes: &RecoveryCodes,
        submitted: &SubmittedRecoveryCode,
    ) -> Result<Option<usize>, CipherError> {
        let key = self.hash_key(&codes.key_id)?;
        // Input that cannot be a code is still hashed and compared, so its
        // answer takes as long as any other wrong code's.
        let canonical = submitted.canonical().unwrap_or("");
        let candidate = key.hash(owner, canonical);
        let mut found = None;
        for (index, stored) in codes.hashes.iter().enumerate() {
            let equal: Choice = stored.0.ct_eq(&candidate.0);
            if bool::from(equal) && submitted.canonical().is_some() {
                found = Some(index);
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;

    const K1: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const K2: &str = "k2:Hx4dHBsaGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=";

    fn ring(keys: &str) -> AesGcmCipher {
        AesGcmCipher::from_config(&SecretString::from(keys)).unwrap()
    }

    fn user(id: &str) -> UserId {
        UserId::parse(id).unwrap()
    }

    fn set_of(ring: &AesGcmCipher, owner: &UserId, codes: &[RecoveryCode]) -> RecoveryCodes {
        let key_id = ring.recovery_key_id().to_owned();
        RecoveryCodes {
            hashes: codes
                .iter()
                .map(|code| ring.hash(&key_id, owner, code).unwrap())
                .collect(),
            key_id,
        }
    }

    fn submitted(text: &str) -> SubmittedRecoveryCode {
        SubmittedRecoveryCode::parse(text).unwrap()
    }

    #[test]
    fn finds_the_code_in_any_spelling_and_nothing_else() {
        let ring = ring(K1);
        let alice = user("alice");
        let codes: Vec<RecoveryCode> = (0..5).map(|_| ring.generate()).collect();
        let set = set_of(&ring, &alice, &codes);
        for (index, code) in codes.iter().enumerate() {
            let sloppy = code.expose().to_lowercase().replace('-', " ");
            assert_eq!(
                ring.position(&alice, &set, &submitted(&sloppy)).unwrap(),
                Some(index)
            );
        }
        assert_eq!(
            ring.position(&alice, &set, &submitted("not a code"))
                .unwrap(),
            None
        );
        // Another user's set never matches Alice's code.
        let bob = user("bob");
        assert_eq!(
            ring.position(&bob, &set, &submitted(codes[0].expose()))
                .unwrap(),
            None
        );
    }

    #[test]
    fn codes_are_random_and_hashes_are_keyed() {
        let ring1 = ring(K1);
        let a = ring1.generate();
        let b = ring1.generate();
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.expose().len(), 11);
        let alice = user("alice");
        let under_k1 = ring1.hash("k1", &alice, &a).unwrap();
        let ring2 = ring(&format!("{K2},{K1}"));
        assert_eq!(ring2.recovery_key_id(), "k2");
        assert_ne!(ring2.hash("k2", &alice, &a).unwrap(), under_k1);
        // Rotated: the set hashed under k1 still verifies while k1 is configured.
        let old = RecoveryCodes {
            key_id: "k1".to_owned(),
            hashes: vec![under_k1],
        };
        assert_eq!(
            ring2
                .position(&alice, &old, &submitted(a.expose()))
                .unwrap(),
            Some(0)
        );
        // Once k1 is gone from the keyring, it does not.
        assert_eq!(
            ring(K2).position(&alice, &old, &submitted(a.expose())),
            Err(CipherError::UnknownKey("k1".to_owned()))
        );
    }
}
