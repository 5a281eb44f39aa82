//! The production clock: the operating system's wall clock behind the
//! application's `Clock` port. The only place the service reads the time;
//! everything else is given a `Clock` (tests give a controllable one).

use chrono::{DateTime, Utc};

use application::Clock;

/// The operating system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(
        clippy::disallowed_methods,
        reason = "the clock adapter: the one place that reads the wall clock"
    )]
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(
        clippy::disallowed_methods,
        reason = "compares the adapter with the operating system's clock"
    )]
    fn it_moves_forward_with_the_wall_clock() {
        let first = SystemClock.now();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = SystemClock.now();
        assert!(second > first, "{first} then {second}");
        // Near the operating system's time, not a fixed instant.
        let unix = std::time::SystemTime::UNIX_EPOCH
            .elapsed()
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or_default();
        assert!((second.timestamp() - unix).abs() <= 1);
    }
}
