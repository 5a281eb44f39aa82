//! The OTP factor and its state machine:
//! none -> NOT_READY (add) -> READY (verify) -> none (remove).

use std::fmt;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};

use crate::totp::{TimeStep, TotpParams};

/// Where a factor stands. "None" is the absence of a factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FactorState {
    /// Added, waiting for its first code.
    NotReady,
    /// Verified; usable at login.
    Ready,
}

/// A secret sealed by the cipher: the id of the key that sealed it and the
/// opaque sealed bytes. Only the cipher can open it.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSecret {
    /// Which configured key sealed it.
    pub key_id: String,
    /// Nonce and ciphertext with its tag, as the cipher lays them out.
    pub sealed: Vec<u8>,
}

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedSecret")
            .field("key_id", &self.key_id)
            .field("sealed", &format_args!("<{} bytes>", self.sealed.len()))
            .finish()
    }
}

/// Why the state machine refused a change. Each is one row of the
/// contract's behaviour table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FactorError {
    /// Add while a READY factor exists.
    #[error("Multifactor OTP (OneTimePassword) is already set up")]
    AlreadySetUp,
    /// Verify without a factor.
    #[error("Multifactor OTP (OneTimePassword) doesn't exist")]
    NothingToVerify,
    /// Verify while the factor is already READY.
    #[error("Multifactor OTP (OneTimePassword) is already set up")]
    AlreadyVerified,
    /// Verify with a code that does not match.
    #[error("Invalid code")]
    InvalidCode,
    /// Remove without a factor.
    #[error("Multifactor OTP (OneTimePassword) doesn't exist")]
    NothingToRemove,
    /// A right code whose time step was already accepted (RFC 6238 5.2).
    #[error("Code has already been used")]
    Reused,
    /// Too many wrong codes in a row; codes are not checked until `until`.
    #[error("User is locked until {}", .until.to_rfc3339_opts(SecondsFormat::Secs, true))]
    Locked {
        /// When the lock ends.
        until: DateTime<Utc>,
    },
    /// `totp.max_failures` wrong codes in a row: no code is checked until
    /// the factor is removed and set up again.
    #[error("Too many wrong codes: the OTP factor is disabled until it is removed")]
    Disabled,
}

/// A user's OTP factor as stored: state, sealed secret and the parameters it
/// was enrolled with (a configuration change never breaks an enrolled factor).
#[derive(Debug, Clone, PartialEq, Eq)]
///
/// Its fields are private: a factor comes into being only through
/// [`OtpFactor::add`] (or, for a store, [`OtpFactor::restore`] of what it
/// persisted) and changes only through the transitions below, so the state
/// machine holds by construction, not by convention.
pub struct OtpFactor {
    state: FactorState,
    secret: SealedSecret,
    params: TotpParams,
    created_at: DateTime<Utc>,
    changed_at: DateTime<Utc>,
    last_used_step: Option<TimeStep>,
}

impl OtpFactor {
    /// A factor exactly as a store persisted it, for the store that reads it
    /// back: every value comes from an earlier transition of this type.
    #[must_use]
    pub const fn restore(
        state: FactorState,
        secret: SealedSecret,
        params: TotpParams,
        created_at: DateTime<Utc>,
        changed_at: DateTime<Utc>,
        last_used_step: Option<TimeStep>,
    ) -> Self {
        Self {
            state,
            secret,
            params,
            created_at,
            changed_at,
            last_used_step,
        }
    }

    /// The sealed secret, taking the factor apart (a store that writes it).
    #[must_use]
    pub fn into_secret(self) -> SealedSecret {
        self.secret
    }

    /// NOT_READY or READY.
    #[must_use]
    pub const fn state(&self) -> FactorState {
        self.state
    }

    /// The sealed secret.
    #[must_use]
    pub const fn secret(&self) -> &SealedSecret {
        &self.secret
    }

    /// Algorithm, digits, period and skew of this factor.
    #[must_use]
    pub const fn params(&self) -> TotpParams {
        self.params
    }

    /// When it was added.
    #[must_use]
    pub const fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }

    /// When it last changed state.
    #[must_use]
    pub const fn changed_at(&self) -> DateTime<Utc> {
        self.changed_at
    }

    /// The newest time step accepted; no code of this or an earlier step is
    /// accepted again.
    #[must_use]
    pub const fn last_used_step(&self) -> Option<TimeStep> {
        self.last_used_step
    }

    /// The same factor with its secret sealed again (a key rotation): the
    /// secret is the same, only the key that seals it changed.
    #[must_use]
    pub fn resealed(&self, secret: SealedSecret) -> Self {
        Self {
            secret,
            ..self.clone()
        }
    }

    /// Add: allowed when there is no factor or only a pending one, which the
    /// new factor replaces (its secret stops working).
    ///
    /// # Errors
    /// [`FactorError::AlreadySetUp`] when a READY factor exists.
    pub fn add(
        current: Option<&Self>,
        secret: SealedSecret,
        params: TotpParams,
        at: DateTime<Utc>,
    ) -> Result<Self, FactorError> {
        if current.is_some_and(|factor| factor.state == FactorState::Ready) {
            return Err(FactorError::AlreadySetUp);
        }
        Ok(Self {
            state: FactorState::NotReady,
            secret,
            params,
            created_at: at,
            changed_at: at,
            last_used_step: None,
        })
    }

    /// A factor built from a secret imported from another system: READY at
    /// once when `ready` (the secret is already on the user's phone), else
    /// NOT_READY awaiting the user's first code, as after Add.
    #[must_use]
    pub fn imported(
        secret: SealedSecret,
        params: TotpParams,
        ready: bool,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            state: if ready {
                FactorState::Ready
            } else {
                FactorState::NotReady
            },
            secret,
            params,
            created_at: at,
            changed_at: at,
            last_used_step: None,
        }
    }

    /// Import: allowed when there is no factor or only a pending one, which
    /// the imported factor replaces (as Add replaces it; its secret stops
    /// working): the same rule as [`OtpFactor::add`].
    ///
    /// # Errors
    /// [`FactorError::AlreadySetUp`] when a READY factor exists.
    pub fn import(
        current: Option<&Self>,
        secret: SealedSecret,
        params: TotpParams,
        ready: bool,
        at: DateTime<Utc>,
    ) -> Result<Self, FactorError> {
        if current.is_some_and(|factor| factor.state == FactorState::Ready) {
            return Err(FactorError::AlreadySetUp);
        }
        Ok(Self::imported(secret, params, ready, at))
    }

    /// Whether this is a pending factor older than `pending_ttl` at `now`.
    #[must_use]
    pub fn is_expired_pending(&self, now: DateTime<Utc>, pending_ttl: TimeDelta) -> bool {
        self.state == FactorState::NotReady
            && self
                .created_at
                .checked_add_signed(pending_ttl)
                .is_none_or(|expiry| expiry <= now)
    }

    /// The stored factor as the rules see it: a pending factor past its time
    /// to live counts as absent.
    #[must_use]
    pub fn live(
        stored: Option<&Self>,
        now: DateTime<Utc>,
        pending_ttl: TimeDelta,
    ) -> Option<&Self> {
        stored.filter(|factor| !factor.is_expired_pending(now, pending_ttl))
    }

    /// The factor a login check may act on: it must be READY.
    ///
    /// # Errors
    /// [`FactorError::NothingToVerify`] without a READY factor.
    pub fn ready_for_check(current: Option<&Self>) -> Result<&Self, FactorError> {
        current
            .filter(|factor| factor.state == FactorState::Ready)
            .ok_or(FactorError::NothingToVerify)
    }

    /// The factor after a code of `step` was accepted.
    #[must_use]
    pub fn used(&self, step: TimeStep) -> Self {
        Self {
            last_used_step: Some(step),
            ..self.clone()
        }
    }

    /// The factor a Verify may act on: it must exist and still be pending.
    ///
    /// # Errors
    /// [`FactorError::NothingToVerify`] or [`FactorError::AlreadyVerified`].
    pub fn pending_for_verify(current: Option<&Self>) -> Result<&Self, FactorError> {
        match current {
            None => Err(FactorError::NothingToVerify),
            Some(factor) if factor.state == FactorState::Ready => Err(FactorError::AlreadyVerified),
            Some(factor) => Ok(factor),
        }
    }

    /// The factor after its first right code.
    #[must_use]
    pub fn verified(&self, at: DateTime<Utc>) -> Self {
        Self {
            state: FactorState::Ready,
            changed_at: at,
            ..self.clone()
        }
    }

    /// Remove: allowed for a pending or READY factor.
    ///
    /// # Errors
    /// [`FactorError::NothingToRemove`] when there is no factor.
    pub fn remove(current: Option<&Self>) -> Result<(), FactorError> {
        current.map(|_| ()).ok_or(FactorError::NothingToRemove)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(tag: u8) -> SealedSecret {
        SealedSecret {
            key_id: "k1".into(),
            sealed: vec![tag; 48],
        }
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    #[test]
    fn add_creates_a_pending_factor_and_replaces_a_pending_one() {
        let first = OtpFactor::add(None, sealed(1), TotpParams::default(), at(10)).unwrap();
        assert_eq!(first.state, FactorState::NotReady);
        let second =
            OtpFactor::add(Some(&first), sealed(2), TotpParams::default(), at(20)).unwrap();
        assert_eq!(second.secret, sealed(2));
        assert_eq!(second.created_at, at(20));
    }

    #[test]
    fn add_refuses_when_ready() {
        let ready = OtpFactor::add(None, sealed(1), TotpParams::default(), at(10))
            .unwrap()
            .verified(at(11));
        assert_eq!(ready.state, FactorState::Ready);
        assert_eq!(ready.changed_at, at(11));
        assert_eq!(ready.created_at, at(10));
        assert_eq!(
            OtpFactor::add(Some(&ready), sealed(2), TotpParams::default(), at(12)),
            Err(FactorError::AlreadySetUp)
        );
    }

    #[test]
    fn verify_needs_a_pending_factor() {
        assert_eq!(
            OtpFactor::pending_for_verify(None),
            Err(FactorError::NothingToVerify)
        );
        let pending = OtpFactor::add(None, sealed(1), TotpParams::default(), at(10)).unwrap();
        assert!(OtpFactor::pending_for_verify(Some(&pending)).is_ok());
        let ready = pending.verified(at(11));
        assert_eq!(
            OtpFactor::pending_for_verify(Some(&ready)),
            Err(FactorError::AlreadyVerified)
        );
    }

    #[test]
    fn remove_needs_a_factor_in_any_state() {
        assert_eq!(OtpFactor::remove(None), Err(FactorError::NothingToRemove));
        let pending = OtpFactor::add(None, sealed(1), TotpParams::default(), at(10)).unwrap();
        assert!(OtpFactor::remove(Some(&pending)).is_ok());
        assert!(OtpFactor::remove(Some(&pending.verified(at(11)))).is_ok());
    }

    #[test]
    fn pending_factors_expire_ready_ones_do_not() {
        let ttl = TimeDelta::seconds(600);
        let pending = OtpFactor::add(None, sealed(1), TotpParams::default(), at(10)).unwrap();
        assert!(OtpFactor::live(Some(&pending), at(609), ttl).is_some());
        assert!(OtpFactor::live(Some(&pending), at(610), ttl).is_none());
        let ready = pending.verified(at(20));
        assert!(OtpFactor::live(Some(&ready), at(100_000), ttl).is_some());
        assert_eq!(
            OtpFactor::ready_for_check(Some(&pending)),
            Err(FactorError::NothingToVerify)
        );
        assert!(OtpFactor::ready_for_check(Some(&ready)).is_ok());
        assert_eq!(ready.used(TimeStep(7)).last_used_step, Some(TimeStep(7)));
    }

    #[test]
    fn import_is_ready_or_pending_and_refuses_over_a_ready_factor() {
        let ready =
            OtpFactor::import(None, sealed(1), TotpParams::default(), true, at(10)).unwrap();
        assert_eq!(ready.state, FactorState::Ready);
        assert_eq!((ready.created_at, ready.changed_at), (at(10), at(10)));
        assert_eq!(ready.last_used_step, None);
        assert_eq!(
            OtpFactor::import(
                Some(&ready),
                sealed(2),
                TotpParams::default(),
                false,
                at(11)
            ),
            Err(FactorError::AlreadySetUp)
        );
        let pending = OtpFactor::add(None, sealed(3), TotpParams::default(), at(12)).unwrap();
        let replaced = OtpFactor::import(
            Some(&pending),
            sealed(4),
            TotpParams::default(),
            false,
            at(13),
        )
        .unwrap();
        assert_eq!(replaced.state, FactorState::NotReady);
        assert_eq!(replaced.secret, sealed(4));
        assert!(OtpFactor::pending_for_verify(Some(&replaced)).is_ok());
    }

    #[test]
    fn locked_says_when_it_ends() {
        let error = FactorError::Locked { until: at(300) };
        assert_eq!(
            error.to_string(),
            "User is locked until 1970-01-01T00:05:00Z"
        );
    }

    #[test]
    fn sealed_secret_debug_shows_no_bytes() {
        let debug = format!("{:?}", sealed(0xAB));
        assert!(debug.contains("48 bytes"));
        assert!(!debug.contains("171"));
    }

    #[test]
    fn resealing_changes_only_the_secret_and_restore_rebuilds_any_factor() {
        let factor = OtpFactor::add(None, sealed(1), TotpParams::default(), at(10))
            .unwrap()
            .verified(at(20))
            .used(TimeStep(9));
        let resealed = factor.resealed(sealed(2));
        assert_eq!(resealed.secret(), &sealed(2));
        assert_eq!(resealed.resealed(sealed(1)), factor);
        let restored = OtpFactor::restore(
            factor.state(),
            factor.secret().clone(),
            factor.params(),
            factor.created_at(),
            factor.changed_at(),
            factor.last_used_step(),
        );
        assert_eq!(restored, factor);
        assert_eq!(restored.into_secret(), sealed(1));
    }
}
