//! A per-user limit on factor changes (Add and Remove), so an Add/Remove
//! loop or Add over a pending factor cannot append events forever.
//!
//! A sliding window of one hour per user, kept in this process: each
//! replica admits up to the limit, so the cluster admits at most
//! `replicas × limit` per hour. Bounding growth is the aim, not an exact
//! quota, and the store stays one statement per call.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use chrono::{DateTime, TimeDelta, Utc};

use domain::UserId;

use crate::error::ApplicationError;

/// How many users the window keeps at most; when full, users whose window
/// is empty are dropped first, then everyone (a flood of distinct users
/// costs memory, not correctness for long).
const MAX_TRACKED_USERS: usize = 100_000;

/// Changes admitted per user per hour.
#[derive(Debug, Default)]
pub struct ChangeLimiter {
    per_hour: u32,
    recent: Mutex<HashMap<UserId, VecDeque<DateTime<Utc>>>>,
}

impl ChangeLimiter {
    /// Admits `per_hour` changes per user per sliding hour; `0` admits all.
    #[must_use]
    pub fn new(per_hour: u32) -> Self {
        Self {
            per_hour,
            recent: Mutex::default(),
        }
    }

    /// Counts a change by `user` at `at`, or refuses it when the user
    /// already made `per_hour` in the hour before.
    ///
    /// # Errors
    /// [`ApplicationError::TooManyChanges`].
    pub fn admit(&self, user: &UserId, at: DateTime<Utc>) -> Result<(), ApplicationError> {
        if self.per_hour == 0 {
            return Ok(());
        }
        let window_start = at - TimeDelta::hours(1);
        let mut recent = self
            .recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if recent.len() >= MAX_TRACKED_USERS && !recent.contains_key(user) {
            recent.retain(|_, times| times.back().is_some_and(|last| *last > window_start));
            if recent.len() >= MAX_TRACKED_USERS {
                recent.clear();
            }
        }
        let times = recent.entry(user.clone()).or_default();
        while times.front().is_some_and(|first| *first <= window_start) {
            times.pop_front();
        }
        if times.len() >= usize::try_from(self.per_hour).unwrap_or(usize::MAX) {
            tracing::warn!(user_id = %user, "factor change refused: rate limit");
            tracing::info!(
                target: "otp.metrics",
                reason = "changes_per_hour",
                monotonic_counter.otp.rate_limited = 1_u64
            );
            return Err(ApplicationError::TooManyChanges);
        }
        times.push_back(at);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    #[test]
    fn the_window_slides_per_user() {
        let limiter = ChangeLimiter::new(2);
        let a = UserId::parse("a").unwrap();
        let b = UserId::parse("b").unwrap();
        assert!(limiter.admit(&a, at(0)).is_ok());
        assert!(limiter.admit(&a, at(10)).is_ok());
        assert_eq!(
            limiter.admit(&a, at(20)),
            Err(ApplicationError::TooManyChanges)
        );
        assert!(limiter.admit(&b, at(20)).is_ok(), "per user");
        assert!(
            limiter.admit(&a, at(3600)).is_ok(),
            "the first left the hour"
        );
        assert!(limiter.admit(&a, at(3601)).is_err());
        assert!(ChangeLimiter::new(0).admit(&a, at(0)).is_ok());
    }
}
