//! Randomness from the operating system's CSPRNG.

use rand::TryRng;
use secrecy::SecretString;
use zeroize::Zeroizing;

use application::SecretSource;
use domain::TotpSecret;

fn fill_random(bytes: &mut [u8]) {
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

/// A new `crypto.keys` entry, `<id>:<base64 of 32 random bytes>`.
#[must_use]
pub fn generate_key_line(id: &str) -> SecretString {
    let mut key = Zeroizing::new([0_u8; 32]);
    fill_random(key.as_mut());
    SecretString::from(format!(
        "{id}:{}",
        data_encoding::BASE64.encode(key.as_ref())
    ))
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn secrets_are_twenty_fresh_bytes() {
        let (a, b) = (OsSecrets.generate(), OsSecrets.generate());
        assert_eq!(a.expose_bytes().len(), 20);
        assert_ne!(a.expose_bytes(), b.expose_bytes());
    }

    #[test]
    fn key_lines_parse_as_keys() {
        let line = generate_key_line("2026-11");
        let (id, key) = line.expose_secret().split_once(':').unwrap();
        assert_eq!(id, "2026-11");
        assert_eq!(
            data_encoding::BASE64.decode(key.as_bytes()).unwrap().len(),
            32
        );
    }
}
