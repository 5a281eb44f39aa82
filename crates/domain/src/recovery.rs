//! Recovery codes: single-use codes a user keeps on paper for when the phone
//! with the authenticator app is gone. Each has 50 bits of entropy (10
//! symbols of a 32-symbol alphabet), enough that a keyed hash (HMAC-SHA256,
//! in the crypto adapter) needs no slow password hash; only those hashes are
//! stored. Codes are secrets: no `Debug`, `Display` or log shows one.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

/// The symbols of a code: Crockford's base32 (digits and capitals without
/// I, L, O and U), so a code read aloud or off paper is hard to mistake.
pub const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Symbols per code: 10 symbols of 5 bits, 50 bits of entropy.
pub const SYMBOLS: usize = 10;

/// The longest input looked at (as for OTP codes); longer is refused.
pub const MAX_INPUT_CHARS: usize = 200;

/// A freshly issued code, `XXXXX-XXXXX`: shown to the user once, never stored.
#[derive(Clone)]
pub struct RecoveryCode(SecretString);

impl RecoveryCode {
    /// The code of `random` bytes: each byte's low five bits pick a symbol
    /// (256 is a multiple of 32, so each symbol is equally likely).
    #[must_use]
    pub fn from_random(random: &[u8; SYMBOLS]) -> Self {
        let mut text = Zeroizing::new(String::with_capacity(SYMBOLS + 1));
        for (index, byte) in random.iter().enumerate() {
            if index == SYMBOLS / 2 {
                text.push('-');
            }
            text.push(char::from(ALPHABET[usize::from(byte & 0x1f)]));
        }
        Self(SecretString::from(text.as_str()))
    }

    /// The code as the user sees it.
    #[must_use]
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The canonical form that is hashed: the symbols without the separator.
    #[must_use]
    pub fn canonical(&self) -> Zeroizing<String> {
        Zeroizing::new(self.expose().chars().filter(|c| *c != '-').collect())
    }
}

impl fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryCode([redacted])")
    }
}

/// Why a submitted recovery code was refused before it was looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecoveryInputError {
    /// Empty, or longer than [`MAX_INPUT_CHARS`].
    #[error("value length must be between 1 and 200 runes")]
    Length,
}

/// A code as submitted at login, normalized: case folded, spaces and dashes
/// dropped, and the letters Crockford's base32 reads as digits (O as 0, I
/// and L as 1) mapped. Input that is not [`SYMBOLS`] symbols of the alphabet
/// after that is kept as "matches nothing": it is a wrong code like any other.
#[derive(Clone)]
pub struct SubmittedRecoveryCode(Option<SecretString>);

impl SubmittedRecoveryCode {
    /// Normalizes `input`.
    ///
    /// # Errors
    /// [`RecoveryInputError::Length`] for empty input or input longer than
    /// [`MAX_INPUT_CHARS`] characters.
    pub fn parse(input: &str) -> Result<Self, RecoveryInputError> {
        let chars = input.chars().count();
        if chars == 0 || chars > MAX_INPUT_CHARS {
            return Err(RecoveryInputError::Length);
        }
        let mut canonical = Zeroizing::new(String::with_capacity(SYMBOLS));
        for c in input.chars() {
            if c.is_whitespace() || c == '-' {
                continue;
            }
            let c = match c.to_ascii_uppercase() {
                'O' => '0',
                'I' | 'L' => '1',
                other => other,
            };
            if !c.is_ascii() || !ALPHABET.contains(&(c as u8)) {
                return Ok(Self(None));
            }
            canonical.push(c);
        }
        if canonical.len() != SYMBOLS {
            return Ok(Self(None));
        }
        Ok(Self(Some(SecretString::from(canonical.as_str()))))
    }

    /// The canonical form to hash, or `None` when the input cannot be a code.
    #[must_use]
    pub fn canonical(&self) -> Option<&str> {
        self.0.as_ref().map(ExposeSecret::expose_secret)
    }
}

impl fmt::Debug for SubmittedRecoveryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubmittedRecoveryCode([redacted])")
    }
}

/// The keyed hash of one code (HMAC-SHA256 output).
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryHash(pub [u8; 32]);

impl fmt::Debug for RecoveryHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryHash([redacted])")
    }
}

/// A user's unused recovery codes as stored: their hashes and the id of the
/// keyring key they were hashed with (one key per generated set; rotating
/// the keyring leaves the set verifiable as long as that key is configured).
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryCodes {
    /// The id of the key the hashes were made with.
    pub key_id: String,
    /// One hash per unused code.
    pub hashes: Vec<RecoveryHash>,
}

impl RecoveryCodes {
    /// How many codes are left.
    #[must_use]
    pub fn remaining(&self) -> usize {
        self.hashes.len()
    }

    /// The set without the code at `index` (redeemed), or `None` when that
    /// was the last one.
    #[must_use]
    pub fn without(&self, index: usize) -> Option<Self> {
        let hashes: Vec<RecoveryHash> = self
            .hashes
            .iter()
            .enumerate()
            .filter(|(at, _)| *at != index)
            .map(|(_, hash)| hash.clone())
            .collect();
        (!hashes.is_empty()).then(|| Self {
            key_id: self.key_id.clone(),
            hashes,
        })
    }
}

impl fmt::Debug for RecoveryCodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecoveryCodes")
            .field("key_id", &self.key_id)
            .field("remaining", &self.hashes.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_codes_are_two_groups_of_five_alphabet_symbols() {
        let code = RecoveryCode::from_random(&[0, 1, 31, 32, 255, 7, 8, 9, 10, 200]);
        assert_eq!(code.expose(), "01Z0Z-789A8");
        assert_eq!(code.canonical().as_str(), "01Z0Z789A8");
    }

    #[test]
    fn input_is_normalized_and_nonsense_matches_nothing() {
        let canonical = |input: &str| {
            SubmittedRecoveryCode::parse(input)
                .unwrap()
                .canonical()
                .map(str::to_owned)
        };
        assert_eq!(canonical("01zoz-789a8").as_deref(), Some("01Z0Z789A8"));
        assert_eq!(canonical(" 01Z0Z 789A8 ").as_deref(), Some("01Z0Z789A8"));
        assert_eq!(canonical("iLZ0Z-789A8").as_deref(), Some("11Z0Z789A8"));
        assert_eq!(canonical("01Z0Z-789A"), None, "too short");
        assert_eq!(canonical("01Z0Z-789AU"), None, "U is not a symbol");
        assert_eq!(canonical("01Z0Z-789Aé"), None);
        assert!(SubmittedRecoveryCode::parse("").is_err());
        assert!(SubmittedRecoveryCode::parse(&"1".repeat(201)).is_err());
    }

    #[test]
    fn debug_shows_no_code_and_no_hash() {
        let code = RecoveryCode::from_random(&[5; SYMBOLS]);
        assert_eq!(format!("{code:?}"), "RecoveryCode([redacted])");
        let submitted = SubmittedRecoveryCode::parse("55555-55555").unwrap();
        assert!(!format!("{submitted:?}").contains("5555"));
        let codes = RecoveryCodes {
            key_id: "k1".to_owned(),
            hashes: vec![RecoveryHash([0xab; 32]), RecoveryHash([0xcd; 32])],
        };
        let debug = format!("{codes:?}");
        assert_eq!(debug, "RecoveryCodes { key_id: \"k1\", remaining: 2 }");
    }

    #[test]
    fn redeeming_removes_one_and_the_last_leaves_none() {
        let codes = RecoveryCodes {
            key_id: "k1".to_owned(),
            hashes: vec![RecoveryHash([1; 32]), RecoveryHash([2; 32])],
        };
        let left = codes.without(0).unwrap();
        assert_eq!(left.hashes, vec![RecoveryHash([2; 32])]);
        assert_eq!(left.without(0), None);
    }
}
