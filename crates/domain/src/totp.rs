//! TOTP (RFC 6238) keys, parameters, submitted codes and the otpauth URL.
//!
//! The HMAC/truncation math is totp-rs's; this module decides which
//! parameters are allowed, keeps the secret out of Debug output and builds the
//! otpauth URL exactly as docs/api.md (section 3) spells it.

use std::fmt;

use secrecy::{ExposeSecret, SecretBox, SecretString};
use zeroize::Zeroize;

/// Fewest secret bytes accepted (RFC 4226 section 4: at least 128 bits).
const MIN_SECRET_BYTES: usize = 16;
/// Most secret bytes accepted (SHA-512's block size; more adds nothing).
const MAX_SECRET_BYTES: usize = 128;
/// Fewest bytes of an imported legacy secret, when a setting allows them
/// (80 bits: what many older systems generated, RFC 4226's absolute floor).
const LEGACY_MIN_SECRET_BYTES: usize = 10;
/// The contract's bounds on a submitted code's length, in characters.
const MAX_SUBMITTED_CODE_CHARS: usize = 200;

/// The shared TOTP secret: raw bytes, zeroized on drop, never printed.
pub struct TotpSecret(SecretBox<[u8]>);

impl TotpSecret {
    /// Bytes in a freshly generated secret (160 bits, RFC 4226's recommendation).
    pub const GENERATED_LEN: usize = 20;

    /// Wraps raw secret bytes.
    ///
    /// # Errors
    /// [`TotpParamsError::SecretLength`] when there are fewer than 16 or more
    /// than 128 bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, TotpParamsError> {
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&bytes.len()) {
            return Err(TotpParamsError::SecretLength(bytes.len()));
        }
        Ok(Self(SecretBox::new(bytes.into_boxed_slice())))
    }

    /// Decodes an RFC 4648 base32 secret (upper case, padding optional).
    ///
    /// # Errors
    /// [`TotpParamsError::SecretEncoding`] when the text is not base32, or the
    /// errors of [`TotpSecret::from_bytes`].
    pub fn from_base32(text: &str) -> Result<Self, TotpParamsError> {
        let trimmed = text.trim_end_matches('=');
        let bytes = data_encoding::BASE32_NOPAD
            .decode(trimmed.as_bytes())
            .map_err(|_| TotpParamsError::SecretEncoding)?;
        Self::from_bytes(bytes)
    }

    /// Wraps the bytes of a stored secret as the cipher opened them: 10 to
    /// 128 bytes, since an imported legacy secret (see
    /// [`TotpSecret::from_imported_base32`]) may have 80 bits.
    ///
    /// # Errors
    /// [`TotpParamsError::SecretLength`] outside 10..=128 bytes.
    pub fn from_stored_bytes(bytes: Vec<u8>) -> Result<Self, TotpParamsError> {
        if !(LEGACY_MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&bytes.len()) {
            return Err(TotpParamsError::SecretLength(bytes.len()));
        }
        Ok(Self(SecretBox::new(bytes.into_boxed_slice())))
    }

    /// Decodes a secret exported by another system, as people and tools
    /// write base32: any case, spaces, tabs and hyphens between groups
    /// (`jbsw y3dp ...`), with or without `=` padding. At least 128 bits,
    /// or 80 when `allow_legacy_80_bit` (the `import.allow_legacy_80_bit`
    /// setting); at most 1024.
    ///
    /// # Errors
    /// [`TotpParamsError::SecretEncoding`] when the text is not base32,
    /// [`TotpParamsError::SecretTooShort`] below the minimum,
    /// [`TotpParamsError::SecretLength`] above 128 bytes.
    pub fn from_imported_base32(
        text: &str,
        allow_legacy_80_bit: bool,
    ) -> Result<Self, TotpParamsError> {
        let normalized = SecretString::from(
            text.chars()
                .filter(|c| !matches!(c, ' ' | '\t' | '-'))
                .map(|c| c.to_ascii_uppercase())
                .collect::<String>(),
        );
        let trimmed = normalized.expose_secret().trim_end_matches('=');
        let decoded = data_encoding::BASE32_NOPAD.decode(trimmed.as_bytes());
        let mut bytes = decoded.map_err(|_| TotpParamsError::SecretEncoding)?;
        let min = if allow_legacy_80_bit {
            LEGACY_MIN_SECRET_BYTES
        } else {
            MIN_SECRET_BYTES
        };
        let length = bytes.len();
        if !(min..=MAX_SECRET_BYTES).contains(&length) {
            bytes.zeroize();
            return Err(if length < min {
                TotpParamsError::SecretTooShort {
                    bits: length * 8,
                    min_bits: min * 8,
                }
            } else {
                TotpParamsError::SecretLength(length)
            });
        }
        Ok(Self(SecretBox::new(bytes.into_boxed_slice())))
    }

    /// Whether `other` holds the same bytes, compared in constant time for
    /// equal lengths.
    #[must_use]
    pub fn same_as(&self, other: &Self) -> bool {
        let (a, b) = (self.expose_bytes(), other.expose_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0_u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    /// The raw bytes, for the cipher and the HMAC only.
    #[must_use]
    pub fn expose_bytes(&self) -> &[u8] {
        self.0.expose_secret()
    }

    /// The secret as authenticator apps take it: base32, upper case, no padding.
    #[must_use]
    pub fn to_base32(&self) -> SecretString {
        SecretString::from(data_encoding::BASE32_NOPAD.encode(self.expose_bytes()))
    }
}

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret([REDACTED])")
    }
}

/// The HMAC hash of a TOTP key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TotpAlgorithm {
    /// HMAC-SHA1: what every authenticator app assumes.
    #[default]
    Sha1,
    /// HMAC-SHA256.
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

impl TotpAlgorithm {
    /// The name used in otpauth URLs and configuration (`SHA1`, ...).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
            Self::Sha512 => "SHA512",
        }
    }

    /// Parses `SHA1`, `SHA256` or `SHA512` (any case).
    ///
    /// # Errors
    /// [`TotpParamsError::Algorithm`] for anything else.
    pub fn parse(name: &str) -> Result<Self, TotpParamsError> {
        match name.to_ascii_uppercase().as_str() {
            "SHA1" => Ok(Self::Sha1),
            "SHA256" => Ok(Self::Sha256),
            "SHA512" => Ok(Self::Sha512),
            _ => Err(TotpParamsError::Algorithm(name.chars().take(16).collect())),
        }
    }

    const fn to_totp_rs(self) -> totp_rs::Algorithm {
        match self {
            Self::Sha1 => totp_rs::Algorithm::SHA1,
            Self::Sha256 => totp_rs::Algorithm::SHA256,
            Self::Sha512 => totp_rs::Algorithm::SHA512,
        }
    }
}

/// Why TOTP parameters or a secret were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TotpParamsError {
    /// Not SHA1, SHA256 or SHA512.
    #[error("unknown TOTP algorithm {0:?} (expected SHA1, SHA256 or SHA512)")]
    Algorithm(String),
    /// Digits other than 6 or 8.
    #[error("TOTP digits must be 6 or 8, not {0}")]
    Digits(u8),
    /// A period outside 10..=300 seconds.
    #[error("TOTP period must be between 10 and 300 seconds, not {0}")]
    Period(u32),
    /// A skew above 2 steps.
    #[error("TOTP skew must be between 0 and 2 steps, not {0}")]
    Skew(u8),
    /// A secret shorter than 128 bits or longer than 1024 bits.
    #[error("a TOTP secret must have 16 to 128 bytes, not {0}")]
    SecretLength(usize),
    /// A secret that is not base32.
    #[error("a TOTP secret must be RFC 4648 base32")]
    SecretEncoding,
    /// An imported secret with fewer bits than allowed.
    #[error("the TOTP secret has {bits} bits, fewer than the {min_bits} required")]
    SecretTooShort {
        /// Its bits.
        bits: usize,
        /// The minimum in force.
        min_bits: usize,
    },
}

/// How codes are computed and how far from "now" they are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TotpParams {
    algorithm: TotpAlgorithm,
    digits: u8,
    period: u32,
    skew: u8,
}

impl Default for TotpParams {
    /// SHA1, 6 digits, 30 seconds, one step either side: what apps assume.
    fn default() -> Self {
        Self {
            algorithm: TotpAlgorithm::Sha1,
            digits: 6,
            period: 30,
            skew: 1,
        }
    }
}

impl TotpParams {
    /// Checks and builds a parameter set.
    ///
    /// # Errors
    /// [`TotpParamsError`] when digits are not 6 or 8, the period is outside
    /// 10..=300 s, or the skew is above 2 steps (wider windows only help
    /// guessing).
    pub fn new(
        algorithm: TotpAlgorithm,
        digits: u8,
        period: u32,
        skew: u8,
    ) -> Result<Self, TotpParamsError> {
        if digits != 6 && digits != 8 {
            return Err(TotpParamsError::Digits(digits));
        }
        if !(10..=300).contains(&period) {
            return Err(TotpParamsError::Period(period));
        }
        if skew > 2 {
            return Err(TotpParamsError::Skew(skew));
        }
        Ok(Self {
            algorithm,
            digits,
            period,
            skew,
        })
    }

    /// The HMAC hash.
    #[must_use]
    pub const fn algorithm(&self) -> TotpAlgorithm {
        self.algorithm
    }
    /// Digits per code (6 or 8).
    #[must_use]
    pub const fn digits(&self) -> u8 {
        self.digits
    }
    /// Seconds per time step.
    #[must_use]
    pub const fn period(&self) -> u32 {
        self.period
    }
    /// Steps accepted either side of the current one.
    #[must_use]
    pub const fn skew(&self) -> u8 {
        self.skew
    }
}

/// A TOTP time step (RFC 6238 `T`): Unix seconds divided by the period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeStep(pub u64);

/// A code as the user typed it: 1 to 200 characters (the contract's request
/// rule), kept secret because a fresh code is a credential.
pub struct SubmittedCode(SecretString);

/// Why a submitted code was refused before it was compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CodeLengthError {
    /// No characters at all.
    #[error("the code is empty")]
    Empty,
    /// More characters than any request may carry (the count).
    #[error("the code has {0} characters, more than 200")]
    TooLong(usize),
}

impl SubmittedCode {
    /// Accepts the request field.
    ///
    /// # Errors
    /// [`CodeLengthError`] when it has no characters or more than 200.
    pub fn parse(code: &str) -> Result<Self, CodeLengthError> {
        let chars = code.chars().count();
        if chars == 0 {
            return Err(CodeLengthError::Empty);
        }
        if chars > MAX_SUBMITTED_CODE_CHARS {
            return Err(CodeLengthError::TooLong(chars));
        }
        Ok(Self(SecretString::from(code)))
    }

    fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for SubmittedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubmittedCode([REDACTED])")
    }
}

/// A secret together with the parameters it was enrolled with.
#[derive(Debug)]
pub struct TotpKey {
    secret: TotpSecret,
    params: TotpParams,
}

impl TotpKey {
    /// Binds a secret to its parameters.
    #[must_use]
    pub const fn new(secret: TotpSecret, params: TotpParams) -> Self {
        Self { secret, params }
    }

    /// The secret.
    #[must_use]
    pub const fn secret(&self) -> &TotpSecret {
        &self.secret
    }

    /// The parameters.
    #[must_use]
    pub const fn params(&self) -> TotpParams {
        self.params
    }

    fn totp(&self) -> totp_rs::Totp {
        self.totp_with_skew(self.params.skew)
    }

    fn totp_with_skew(&self, skew: u8) -> totp_rs::Totp {
        // Every value was checked by TotpParams / TotpSecret, so the RFC
        // checks of `build()` add nothing; `build_noncompliant` cannot fail.
        totp_rs::Builder::new()
            .with_algorithm(self.params.algorithm.to_totp_rs())
            .with_digits(self.params.digits)
            .with_step_duration(u64::from(self.params.period))
            .with_skew(u16::from(skew))
            .with_secret(self.secret.expose_bytes())
            .build_noncompliant()
    }

    /// The time step that contains `unix_seconds`.
    #[must_use]
    pub const fn step_at(&self, unix_seconds: u64) -> TimeStep {
        TimeStep(unix_seconds / self.params.period as u64)
    }

    /// The code an authenticator shows at `unix_seconds`.
    #[must_use]
    pub fn code_at(&self, unix_seconds: u64) -> SecretString {
        SecretString::from(self.totp().generate(unix_seconds).to_string())
    }

    /// Checks a submitted code against the steps `T-skew ..= T+skew` around
    /// `unix_seconds` and returns the step it matched. A code that is not
    /// exactly `digits` ASCII digits never matches.
    #[must_use]
    pub fn verify(&self, code: &SubmittedCode, unix_seconds: u64) -> Option<TimeStep> {
        self.totp().check(code.expose(), unix_seconds).map(TimeStep)
    }

    /// Checks a submitted code with replay protection (RFC 6238 section 5.2):
    /// only a step after `last_used` may be accepted. Every step of the
    /// window is compared (in constant time per step), so a code that
    /// matches both a used and a fresh step is accepted at the fresh one.
    #[must_use]
    pub fn check(
        &self,
        code: &SubmittedCode,
        unix_seconds: u64,
        last_used: Option<TimeStep>,
    ) -> CodeCheck {
        let exact = self.totp_with_skew(0);
        let period = u64::from(self.params.period);
        let now = self.step_at(unix_seconds).0;
        let skew = u64::from(self.params.skew);
        let mut reused = false;
        for step in now.saturating_sub(skew)..=now.saturating_add(skew) {
            let Some(at) = step.checked_mul(period) else {
                continue;
            };
            if exact.check(code.expose(), at).is_none() {
                continue;
            }
            if last_used.is_some_and(|used| TimeStep(step) <= used) {
                reused = true;
            } else {
                return CodeCheck::Accepted(TimeStep(step));
            }
        }
        if reused {
            CodeCheck::Reused
        } else {
            CodeCheck::Invalid
        }
    }
}

/// The outcome of [`TotpKey::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeCheck {
    /// The code matches this step, later than any step used before.
    Accepted(TimeStep),
    /// The code matches only steps at or before the last accepted one.
    Reused,
    /// The code matches no step of the window.
    Invalid,
}

/// Characters kept as they are in the otpauth URL: RFC 3986 unreserved
/// characters, plus `@`, which is legal in both a path segment and a query
/// and is what the contract's example keeps (`gigi@acme.zitadel.cloud`).
fn keep(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'@')
}

fn percent_encode(out: &mut String, text: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &byte in text.as_bytes() {
        if keep(byte) {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
    }
}

/// The otpauth URL authenticator apps scan (Key Uri Format), with the query
/// keys in the contract's order: `algorithm`, `digits`, `issuer`, `period`,
/// `secret`. It holds the secret, so it is a [`SecretString`].
#[must_use]
pub fn otpauth_url(issuer: &str, account: &str, key: &TotpKey) -> SecretString {
    let params = key.params();
    let secret = key.secret().to_base32();
    let mut url = String::with_capacity(128 + issuer.len() * 2 + account.len());
    url.push_str("otpauth://totp/");
    percent_encode(&mut url, issuer);
    url.push(':');
    percent_encode(&mut url, account);
    url.push_str("?algorithm=");
    url.push_str(params.algorithm().as_str());
    url.push_str("&digits=");
    url.push_str(&params.digits().to_string());
    url.push_str("&issuer=");
    percent_encode(&mut url, issuer);
    url.push_str("&period=");
    url.push_str(&params.period().to_string());
    url.push_str("&secret=");
    url.push_str(secret.expose_secret());
    SecretString::from(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imported_base32_takes_case_spaces_hyphens_and_padding() {
        let plain =
            TotpSecret::from_imported_base32("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", false).unwrap();
        for written in [
            "jbswy3dpehpk3pxpjbswy3dpehpk3pxp",
            "jbsw y3dp ehpk 3pxp jbsw y3dp ehpk 3pxp",
            "JBSW-Y3DP-EHPK-3PXP-JBSW-Y3DP-EHPK-3PXP",
            "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\t",
        ] {
            let parsed = TotpSecret::from_imported_base32(written, false).unwrap();
            assert!(parsed.same_as(&plain), "{written}");
        }
        // 26 characters = 16 bytes, written with its padding.
        let padded =
            TotpSecret::from_imported_base32("GEZDGNBVGY3TQOJQGEZDGNBVGE======", false).unwrap();
        assert_eq!(padded.expose_bytes().len(), 16);
        assert!(!padded.same_as(&plain));
    }

    #[test]
    fn imported_base32_refuses_bad_text_and_short_secrets() {
        assert_eq!(
            TotpSecret::from_imported_base32("JBSWY3DPEHPK3PX1", false).unwrap_err(),
            TotpParamsError::SecretEncoding
        );
        assert_eq!(
            TotpSecret::from_imported_base32("", false).unwrap_err(),
            TotpParamsError::SecretTooShort {
                bits: 0,
                min_bits: 128
            }
        );
        // 80 bits: refused unless legacy secrets are allowed.
        let legacy = "JBSWY3DPEHPK3PXP";
        assert_eq!(
            TotpSecret::from_imported_base32(legacy, false).unwrap_err(),
            TotpParamsError::SecretTooShort {
                bits: 80,
                min_bits: 128
            }
        );
        let allowed = TotpSecret::from_imported_base32(legacy, true).unwrap();
        assert_eq!(allowed.expose_bytes().len(), 10);
        assert!(TotpSecret::from_stored_bytes(allowed.expose_bytes().to_vec()).is_ok());
        assert_eq!(
            TotpSecret::from_imported_base32("AEBAGBAFAYDQQ", true).unwrap_err(),
            TotpParamsError::SecretTooShort {
                bits: 64,
                min_bits: 80
            }
        );
        let long = "A".repeat(208);
        assert_eq!(
            TotpSecret::from_imported_base32(&long, false).unwrap_err(),
            TotpParamsError::SecretLength(130)
        );
        let error = TotpSecret::from_imported_base32(legacy, false).unwrap_err();
        assert!(!error.to_string().contains(legacy));
    }

    fn key(seed: &[u8], algorithm: TotpAlgorithm, digits: u8) -> TotpKey {
        TotpKey::new(
            TotpSecret::from_bytes(seed.to_vec()).unwrap(),
            TotpParams::new(algorithm, digits, 30, 1).unwrap(),
        )
    }

    /// RFC 6238 Appendix B: the ASCII seeds of the reference implementation.
    const SEED_SHA1: &[u8] = b"12345678901234567890";
    const SEED_SHA256: &[u8] = b"12345678901234567890123456789012";
    const SEED_SHA512: &[u8] = b"1234567890123456789012345678901234567890123456789012345678901234";

    #[test]
    fn check_refuses_steps_at_or_before_the_last_used_one() {
        let key = key(SEED_SHA1, TotpAlgorithm::Sha1, 6);
        let now = 1_000_020; // step 33334
        let step = key.step_at(now);
        let code = SubmittedCode::parse(key.code_at(now).expose_secret()).unwrap();
        assert_eq!(key.check(&code, now, None), CodeCheck::Accepted(step));
        assert_eq!(key.check(&code, now, Some(step)), CodeCheck::Reused);
        assert_eq!(
            key.check(&code, now, Some(TimeStep(step.0 + 5))),
            CodeCheck::Reused
        );
        assert_eq!(
            key.check(&code, now, Some(TimeStep(step.0 - 1))),
            CodeCheck::Accepted(step)
        );
        // The previous step's code is still inside the window, but used.
        let previous = SubmittedCode::parse(key.code_at(now - 30).expose_secret()).unwrap();
        assert_eq!(key.check(&previous, now, Some(step)), CodeCheck::Reused);
        // The next step's code passes once the current one was used.
        let next = SubmittedCode::parse(key.code_at(now + 30).expose_secret()).unwrap();
        assert_eq!(
            key.check(&next, now, Some(step)),
            CodeCheck::Accepted(TimeStep(step.0 + 1))
        );
        let wrong = SubmittedCode::parse("000000").unwrap();
        let wrong = if key.verify(&wrong, now).is_some() {
            SubmittedCode::parse("000001").unwrap()
        } else {
            wrong
        };
        assert_eq!(key.check(&wrong, now, None), CodeCheck::Invalid);
        assert_eq!(
            key.check(&SubmittedCode::parse("12345").unwrap(), now, None),
            CodeCheck::Invalid
        );
    }

    #[test]
    fn rfc6238_appendix_b_vectors() {
        let table: [(u64, &str, &str, &str); 6] = [
            (59, "94287082", "46119246", "90693936"),
            (1_111_111_109, "07081804", "68084774", "25091201"),
            (1_111_111_111, "14050471", "67062674", "99943326"),
            (1_234_567_890, "89005924", "91819424", "93441116"),
            (2_000_000_000, "69279037", "90698825", "38618901"),
            (20_000_000_000, "65353130", "77737706", "47863826"),
        ];
        let sha1 = key(SEED_SHA1, TotpAlgorithm::Sha1, 8);
        let sha256 = key(SEED_SHA256, TotpAlgorithm::Sha256, 8);
        let sha512 = key(SEED_SHA512, TotpAlgorithm::Sha512, 8);
        for (time, c1, c256, c512) in table {
            assert_eq!(sha1.code_at(time).expose_secret(), c1, "SHA1 at {time}");
            assert_eq!(
                sha256.code_at(time).expose_secret(),
                c256,
                "SHA256 at {time}"
            );
            assert_eq!(
                sha512.code_at(time).expose_secret(),
                c512,
                "SHA512 at {time}"
            );
            let code = SubmittedCode::parse(c1).unwrap();
            assert_eq!(sha1.verify(&code, time), Some(TimeStep(time / 30)));
        }
    }

    #[test]
    fn rfc4226_appendix_d_six_digit_values() {
        // HOTP values for counters 0..=9, i.e. TOTP at t = 30 * counter.
        let expected = [
            "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583",
            "399871", "520489",
        ];
        let hotp = key(SEED_SHA1, TotpAlgorithm::Sha1, 6);
        for (counter, want) in expected.iter().enumerate() {
            assert_eq!(hotp.code_at(30 * counter as u64).expose_secret(), *want);
        }
    }

    #[test]
    fn verify_accepts_one_step_either_side_and_nothing_further() {
        let k = key(SEED_SHA1, TotpAlgorithm::Sha1, 6);
        let now = 1_700_000_000_u64;
        for offset in [-30_i64, 0, 30] {
            let code = k.code_at(now.saturating_add_signed(offset));
            let code = SubmittedCode::parse(code.expose_secret()).unwrap();
            let step = k.verify(&code, now).unwrap();
            assert_eq!(step.0 as i64, (now as i64 + offset) / 30);
        }
        for offset in [-90_i64, -60, 60, 90] {
            let code = k.code_at(now.saturating_add_signed(offset));
            let code = SubmittedCode::parse(code.expose_secret()).unwrap();
            assert_eq!(k.verify(&code, now), None, "offset {offset}");
        }
    }

    #[test]
    fn verify_refuses_codes_of_the_wrong_shape() {
        let k = key(SEED_SHA1, TotpAlgorithm::Sha1, 6);
        let good = k.code_at(59);
        let good = good.expose_secret();
        for bad in [
            format!("+{}", &good[1..]),
            format!(" {good}"),
            format!("{good}0"),
            good[..5].to_string(),
            "abcdef".to_string(),
            "٣٣٣٣٣٣".to_string(),
        ] {
            let code = SubmittedCode::parse(&bad).unwrap();
            assert_eq!(k.verify(&code, 59), None, "{bad:?}");
        }
    }

    #[test]
    fn submitted_code_length_is_one_to_two_hundred_chars() {
        assert_eq!(SubmittedCode::parse("").err(), Some(CodeLengthError::Empty));
        assert!(SubmittedCode::parse(&"1".repeat(200)).is_ok());
        assert_eq!(
            SubmittedCode::parse(&"1".repeat(201)).err(),
            Some(CodeLengthError::TooLong(201))
        );
    }

    #[test]
    fn seed_url_is_byte_for_byte_the_contract_example() {
        let secret = TotpSecret::from_base32("TJOPWSDYILLHXFV4MLKNNJOWFG7VSDCK").unwrap();
        let k = TotpKey::new(secret, TotpParams::default());
        let url = otpauth_url("ZITADEL", "gigi@acme.zitadel.cloud", &k);
        assert_eq!(
            url.expose_secret(),
            "otpauth://totp/ZITADEL:gigi@acme.zitadel.cloud?algorithm=SHA1&digits=6&issuer=ZITADEL&period=30&secret=TJOPWSDYILLHXFV4MLKNNJOWFG7VSDCK"
        );
    }

    #[test]
    fn url_percent_encodes_label_and_issuer() {
        let k = key(SEED_SHA1, TotpAlgorithm::Sha256, 8);
        let url = otpauth_url("ACME Corp: Prod", "a b&c/d?e", &k);
        assert_eq!(
            url.expose_secret(),
            "otpauth://totp/ACME%20Corp%3A%20Prod:a%20b%26c%2Fd%3Fe?algorithm=SHA256&digits=8&issuer=ACME%20Corp%3A%20Prod&period=30&secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
        );
    }

    #[test]
    fn secret_round_trips_base32_and_never_prints() {
        let s = TotpSecret::from_base32("TJOPWSDYILLHXFV4MLKNNJOWFG7VSDCK").unwrap();
        assert_eq!(s.expose_bytes().len(), 20);
        assert_eq!(
            s.to_base32().expose_secret(),
            "TJOPWSDYILLHXFV4MLKNNJOWFG7VSDCK"
        );
        let first = format!("{s:?}");
        let debug = format!("{first} {:?}", TotpKey::new(s, TotpParams::default()));
        assert!(!debug.contains("TJOPWSDY"), "{debug}");
        assert!(debug.contains("REDACTED"));
        assert_eq!(
            format!("{:?}", SubmittedCode::parse("123456").unwrap()),
            "SubmittedCode([REDACTED])"
        );
    }

    #[test]
    fn secret_and_params_bounds() {
        assert_eq!(
            TotpSecret::from_bytes(vec![0; 15]).err(),
            Some(TotpParamsError::SecretLength(15))
        );
        assert!(TotpSecret::from_base32("not base32!").is_err());
        assert_eq!(
            TotpParams::new(TotpAlgorithm::Sha1, 7, 30, 1),
            Err(TotpParamsError::Digits(7))
        );
        assert_eq!(
            TotpParams::new(TotpAlgorithm::Sha1, 6, 5, 1),
            Err(TotpParamsError::Period(5))
        );
        assert_eq!(
            TotpParams::new(TotpAlgorithm::Sha1, 6, 30, 3),
            Err(TotpParamsError::Skew(3))
        );
        assert_eq!(TotpAlgorithm::parse("sha256"), Ok(TotpAlgorithm::Sha256));
        assert!(TotpAlgorithm::parse("MD5").is_err());
    }
}
