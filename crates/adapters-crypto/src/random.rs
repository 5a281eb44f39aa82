//! Randomness from the operating system's CSPRNG.

use rand::TryRng;
use secrecy::SecretString;
use zeroize::Zeroizing;

use application::SecretSource;

use crate::keyring::{AesGcmCipher, KeyringError, valid_id};
use domain::TotpSecret;

pub(crate) fn fill_random(bytes: &mut [u8]) {
    if let Err(error) = rand::rngs::SysRng.try_fill_bytes(bytes) {
        // The thread RNG is a CSPRNG seeded from the same OS source; it only
        // stands in if the direct read fails (it will not on Linux).
        tracing::warn!(%error, "OS random source failed, using the thread CSPRNG");
        rand::fill(bytes);
    }
}

/// New TOTP secrets: 20 bytes from the OS CSPRNG.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsSecrets;

impl SecretSource for OsSecrets {
    fn generate(&self) -> TotpSecret {
        let mut bytes = Zeroizing::new(vec![0_u8; TotpSecret::GENERATED_LEN]);
        fill_random(&mut bytes);
        match TotpSecret::from_bytes(bytes.to_vec()) {
            Ok(secret) => secret,
            Err(error) => unreachable!("20 bytes is a valid secret length: {error}"),
        }
    }
}

/// A new `crypto.keys` entry, `<id>:<base64 of 32 random bytes>`, for an
/// id that `crypto.keys` accepts as it is (not trimmed): the line is parsed
/// the way `serve` parses it before it is handed out.
///
/// # Errors
/// [`KeyringError::InvalidId`] for an id `serve` would refuse.
pub fn generate_key_line(id: &str) -> Result<SecretString, KeyringError> {
    if !valid_id(id) {
        return Err(KeyringError::InvalidId);
    }
    let mut key = Zeroizing::new([0_u8; 32]);
    fill_random(key.as_mut());
    let line = SecretString::from(format!(
        "{id}:{}",
        data_encoding::BASE64.encode(key.as_ref())
    ));
    match AesGcmCipher::from_config(&line) {
        Ok(ring) if application::SecretCipher::active_key_id(&ring) == id => Ok(line),
        _ => Err(KeyringError::InvalidId),
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn key_ids_serve_would_refuse_are_refused() {
        let long = "k".repeat(65);
        for bad in [
            "",
            " k1",
            "k1 ",
            "k 1",
            "k1,k2",
            "k1:x",
            "ключ",
            "k/1",
            long.as_str(),
        ] {
            assert_eq!(
                generate_key_line(bad).map(|_| ()),
                Err(KeyringError::InvalidId),
                "{bad:?}"
            );
        }
        for good in ["k1", "2026-11.a_b", &"k".repeat(64)] {
            let line = generate_key_line(good).unwrap();
            let ring = AesGcmCipher::from_config(&line).unwrap();
            assert_eq!(application::SecretCipher::active_key_id(&ring), good);
        }
    }

    #[test]
    fn secrets_are_twenty_fresh_bytes() {
        let (a, b) = (OsSecrets.generate(), OsSecrets.generate());
        assert_eq!(a.expose_bytes().len(), 20);
        assert_ne!(a.expose_bytes(), b.expose_bytes());
    }

    #[test]
    fn key_lines_parse_as_keys() {
        let line = generate_key_line("2026-11").unwrap();
        let (id, key) = line.expose_secret().split_once(':').unwrap();
        assert_eq!(id, "2026-11");
        assert_eq!(
            data_encoding::BASE64.decode(key.as_bytes()).unwrap().len(),
            32
        );
    }
}
