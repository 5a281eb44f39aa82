//! Attempt limits: consecutive wrong codes lock a user's code checks for a
//! while. Pure rules; the store persists [`Attempts`] with the user's stream
//! so the count holds across requests and replicas.
//!
//! Locks escalate: the first lock lasts `lockout`; each further wrong code
//! after a lock ends locks again for twice as long as the one before, up to
//! `max_lockout`. After `max_failures` wrong codes in a row (NIST SP 800-63B
//! 5.2.2: at most 100) the factor is refused for good, until it is removed.
//! Everything is computed from the one stored count.

use chrono::{DateTime, TimeDelta, Utc};

use crate::factor::FactorError;
use crate::totp::{CodeCheck, TimeStep};

/// How many wrong codes in a row lock, for how long, and when for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptPolicy {
    max_attempts: u32,
    lockout: TimeDelta,
    max_lockout: TimeDelta,
    max_failures: u32,
}

/// Why an attempt policy was refused; the text names the setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// `max_attempts` of 0.
    #[error("max_attempts must be at least 1")]
    NoAttempts,
    /// A lockout of zero or less.
    #[error("lockout must be longer than zero")]
    NoLockout,
    /// `max_lockout` shorter than `lockout`.
    #[error("max_lockout must be at least lockout")]
    MaxLockoutBelowLockout,
    /// `max_failures` below `max_attempts`.
    #[error("max_failures must be at least max_attempts")]
    MaxFailuresBelowAttempts,
}

impl AttemptPolicy {
    /// The defaults: 5 wrong codes lock for 5 minutes, doubling with each
    /// further wrong code up to 1 hour; 100 wrong codes in a row disable.
    pub const DEFAULT: Self = Self {
        max_attempts: 5,
        lockout: TimeDelta::minutes(5),
        max_lockout: TimeDelta::hours(1),
        max_failures: 100,
    };

    /// A policy of `max_attempts` (at least 1) and `lockout` (positive),
    /// escalating up to the default cap (at least `lockout`) and disabling
    /// after the default 100 failures (at least `max_attempts`).
    ///
    /// # Errors
    /// [`PolicyError`] naming the setting that is out of range.
    pub fn new(max_attempts: u32, lockout: TimeDelta) -> Result<Self, PolicyError> {
        Self::escalating(
            max_attempts,
            lockout,
            Self::DEFAULT.max_lockout.max(lockout),
            Self::DEFAULT.max_failures.max(max_attempts),
        )
    }

    /// A policy with every knob: `max_lockout` at least `lockout`,
    /// `max_failures` at least `max_attempts`.
    ///
    /// # Errors
    /// [`PolicyError`] naming the setting that is out of range.
    pub fn escalating(
        max_attempts: u32,
        lockout: TimeDelta,
        max_lockout: TimeDelta,
        max_failures: u32,
    ) -> Result<Self, PolicyError> {
        if max_attempts == 0 {
            return Err(PolicyError::NoAttempts);
        }
        if lockout <= TimeDelta::zero() {
            return Err(PolicyError::NoLockout);
        }
        if max_lockout < lockout {
            return Err(PolicyError::MaxLockoutBelowLockout);
        }
        if max_failures < max_attempts {
            return Err(PolicyError::MaxFailuresBelowAttempts);
        }
        Ok(Self {
            max_attempts,
            lockout,
            max_lockout,
            max_failures,
        })
    }

    /// Wrong codes in a row that lock.
    #[must_use]
    pub const fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// How long the first lock lasts after the last wrong code.
    #[must_use]
    pub const fn lockout(&self) -> TimeDelta {
        self.lockout
    }

    /// The longest a lock lasts, however many locks came before.
    #[must_use]
    pub const fn max_lockout(&self) -> TimeDelta {
        self.max_lockout
    }

    /// Wrong codes in a row after which the factor is refused for good.
    #[must_use]
    pub const fn max_failures(&self) -> u32 {
        self.max_failures
    }

    /// How long a lock lasts after the `failures`-th wrong code in a row:
    /// nothing below `max_attempts`, then `lockout`, doubling with each
    /// further wrong code, capped at `max_lockout`.
    #[must_use]
    pub fn lock_for(&self, failures: u32) -> Option<TimeDelta> {
        let beyond = failures.checked_sub(self.max_attempts)?;
        let doubled = 1_i32
            .checked_shl(beyond)
            .filter(|factor| *factor > 0)
            .and_then(|factor| self.lockout.checked_mul(factor))
            .unwrap_or(self.max_lockout);
        Some(doubled.min(self.max_lockout))
    }
}

impl Default for AttemptPolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A user's wrong codes since the last right one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attempts {
    /// Consecutive wrong codes.
    pub failures: u32,
    /// When the last wrong code came.
    pub last_failure_at: Option<DateTime<Utc>>,
}

impl Attempts {
    /// When the lock ends, if the user is locked at `now`. Once the count
    /// has reached the limit it stays there until a right code: after a
    /// lock ends, each further wrong code locks again at once, for twice as
    /// long as the lock before (up to `max_lockout`), so waiting out locks
    /// never buys a full new round.
    #[must_use]
    pub fn locked_until(
        &self,
        policy: &AttemptPolicy,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let lock = policy.lock_for(self.failures)?;
        let until = self.last_failure_at?.checked_add_signed(lock)?;
        (now < until).then_some(until)
    }

    /// Whether the count has reached `max_failures`: the factor is refused
    /// until it is removed (which resets the count).
    #[must_use]
    pub const fn disabled(&self, policy: &AttemptPolicy) -> bool {
        self.failures >= policy.max_failures
    }

    /// The count after one more wrong code at `at`.
    #[must_use]
    pub fn failed(&self, at: DateTime<Utc>) -> Self {
        Self {
            failures: self.failures.saturating_add(1),
            last_failure_at: Some(at),
        }
    }

    /// Whether this count locks.
    #[must_use]
    pub const fn locks(&self, policy: &AttemptPolicy) -> bool {
        self.failures >= policy.max_attempts
    }
}

/// What an attempt to use a code comes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judgement {
    /// The code is right and fresh; the count resets.
    Accepted(TimeStep),
    /// The user is locked; the code was not looked at.
    Locked {
        /// When the lock ends.
        until: DateTime<Utc>,
    },
    /// `max_failures` wrong codes in a row: the code was not looked at and
    /// none will be until the factor is removed.
    Disabled,
    /// The code is wrong or replayed; the count goes up.
    Refused {
        /// [`FactorError::InvalidCode`] or [`FactorError::Reused`].
        error: FactorError,
        /// The count to store.
        attempts: Attempts,
        /// Whether this wrong code started a lock.
        locked_now: bool,
    },
}

/// Judges one attempt: refused unchecked while locked, else `check` decides
/// (it is only called when the user is not locked). A replayed code counts
/// as a wrong one: it is what an attacker who saw a code would send.
pub fn judge(
    attempts: &Attempts,
    policy: &AttemptPolicy,
    now: DateTime<Utc>,
    check: impl FnOnce() -> CodeCheck,
) -> Judgement {
    if attempts.disabled(policy) {
        return Judgement::Disabled;
    }
    if let Some(until) = attempts.locked_until(policy, now) {
        return Judgement::Locked { until };
    }
    let error = match check() {
        CodeCheck::Accepted(step) => return Judgement::Accepted(step),
        CodeCheck::Reused => FactorError::Reused,
        CodeCheck::Invalid => FactorError::InvalidCode,
    };
    let attempts = attempts.failed(now);
    Judgement::Refused {
        error,
        attempts,
        locked_now: attempts.locks(policy),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    fn policy() -> AttemptPolicy {
        AttemptPolicy::new(3, TimeDelta::seconds(60)).unwrap()
    }

    #[test]
    fn policy_refuses_nonsense() {
        assert!(AttemptPolicy::new(0, TimeDelta::seconds(1)).is_err());
        assert!(AttemptPolicy::new(1, TimeDelta::zero()).is_err());
        assert_eq!(AttemptPolicy::default().max_attempts(), 5);
        assert_eq!(AttemptPolicy::default().lockout(), TimeDelta::minutes(5));
    }

    #[test]
    fn the_limit_locks_until_the_lockout_has_passed_since_the_last_failure() {
        let policy = policy();
        let mut attempts = Attempts::default();
        for second in 0..3 {
            assert_eq!(attempts.locked_until(&policy, at(second)), None);
            let Judgement::Refused {
                attempts: next,
                locked_now,
                ..
            } = judge(&attempts, &policy, at(second), || CodeCheck::Invalid)
            else {
                panic!("a wrong code is refused");
            };
            assert_eq!(locked_now, second == 2);
            attempts = next;
        }
        // Locked: even a right code is not looked at.
        let judgement = judge(&attempts, &policy, at(30), || unreachable!("not checked"));
        assert_eq!(judgement, Judgement::Locked { until: at(62) });
        assert!(matches!(
            judge(&attempts, &policy, at(61), || unreachable!()),
            Judgement::Locked { .. }
        ));
        // Over: a right code works.
        assert_eq!(
            judge(&attempts, &policy, at(62), || CodeCheck::Accepted(
                TimeStep(9)
            )),
            Judgement::Accepted(TimeStep(9))
        );
        // Over, but a further wrong code locks again at once.
        assert!(matches!(
            judge(&attempts, &policy, at(62), || CodeCheck::Invalid),
            Judgement::Refused {
                locked_now: true,
                ..
            }
        ));
    }

    #[test]
    fn locks_double_after_the_limit_up_to_the_cap() {
        let policy =
            AttemptPolicy::escalating(3, TimeDelta::seconds(60), TimeDelta::seconds(300), 10)
                .unwrap();
        let locks: Vec<_> = (0..=40)
            .map(|failures| policy.lock_for(failures).map(|d| d.num_seconds()))
            .collect();
        assert_eq!(&locks[..3], &[None, None, None]);
        assert_eq!(
            &locks[3..8],
            &[Some(60), Some(120), Some(240), Some(300), Some(300)]
        );
        assert_eq!(locks[40], Some(300), "huge counts stay at the cap");
        assert_eq!(policy.lock_for(u32::MAX), Some(TimeDelta::seconds(300)));
        // The fourth failure, made once the first lock ended, locks for 120s.
        let fourth = Attempts {
            failures: 4,
            last_failure_at: Some(at(100)),
        };
        assert_eq!(fourth.locked_until(&policy, at(219)), Some(at(220)));
        assert_eq!(fourth.locked_until(&policy, at(220)), None);
    }

    #[test]
    fn max_failures_disable_without_looking_at_the_code() {
        let policy =
            AttemptPolicy::escalating(3, TimeDelta::seconds(60), TimeDelta::seconds(300), 5)
                .unwrap();
        let attempts = Attempts {
            failures: 5,
            last_failure_at: Some(at(0)),
        };
        assert_eq!(
            judge(&attempts, &policy, at(100_000), || unreachable!(
                "not checked"
            )),
            Judgement::Disabled
        );
        let below = Attempts {
            failures: 4,
            ..attempts
        };
        assert!(matches!(
            judge(&below, &policy, at(100_000), || CodeCheck::Invalid),
            Judgement::Refused { .. }
        ));
        assert!(
            AttemptPolicy::escalating(3, TimeDelta::seconds(60), TimeDelta::seconds(59), 5)
                .is_err()
        );
        assert!(
            AttemptPolicy::escalating(3, TimeDelta::seconds(60), TimeDelta::seconds(60), 2)
                .is_err()
        );
        assert_eq!(AttemptPolicy::default().max_failures(), 100);
    }

    #[test]
    fn a_replayed_code_counts_as_a_failure() {
        assert_eq!(
            judge(&Attempts::default(), &policy(), at(5), || CodeCheck::Reused),
            Judgement::Refused {
                error: FactorError::Reused,
                attempts: Attempts {
                    failures: 1,
                    last_failure_at: Some(at(5))
                },
                locked_now: false,
            }
        );
    }
}
