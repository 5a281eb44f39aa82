//! Attempt limits: consecutive wrong codes lock a user's code checks for a
//! while. Pure rules; the store persists [`Attempts`] with the user's stream
//! so the count holds across requests and replicas.

use chrono::{DateTime, TimeDelta, Utc};

use crate::factor::FactorError;
use crate::totp::{CodeCheck, TimeStep};

/// How many wrong codes in a row lock, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptPolicy {
    max_attempts: u32,
    lockout: TimeDelta,
}

impl AttemptPolicy {
    /// The defaults: 5 wrong codes lock for 5 minutes.
    pub const DEFAULT: Self = Self {
        max_attempts: 5,
        lockout: TimeDelta::minutes(5),
    };

    /// A policy of `max_attempts` (at least 1) and `lockout` (positive).
    ///
    /// # Errors
    /// A message naming the setting that is out of range.
    pub fn new(max_attempts: u32, lockout: TimeDelta) -> Result<Self, &'static str> {
        if max_attempts == 0 {
            return Err("max_attempts must be at least 1");
        }
        if lockout <= TimeDelta::zero() {
            return Err("lockout must be longer than zero");
        }
        Ok(Self {
            max_attempts,
            lockout,
        })
    }

    /// Wrong codes in a row that lock.
    #[must_use]
    pub const fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// How long a lock lasts after the last wrong code.
    #[must_use]
    pub const fn lockout(&self) -> TimeDelta {
        self.lockout
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
    /// lock ends, each further wrong code locks again at once (one guess per
    /// lockout period), so waiting out locks never buys a full new round.
    #[must_use]
    pub fn locked_until(
        &self,
        policy: &AttemptPolicy,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        if self.failures < policy.max_attempts {
            return None;
        }
        let until = self.last_failure_at?.checked_add_signed(policy.lockout)?;
        (now < until).then_some(until)
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
