//! How often this replica's first tries miss, and so whether a first try's
//! write should carry the found read.
//!
//! A change first writes without a read, on the state this replica knows of
//! the user or on the empty state (see `known`). That write misses when the
//! user's state is another: a known state another replica changed since, an
//! Add of a user who already has a row. A write statement can answer, when
//! it misses, the state it found, so the change decides again without a read
//! of its own (one round trip instead of two); but setting up that read
//! costs PostgreSQL CPU on every execution, applied or not (about 10 to 20
//! µs a statement on a slow machine, docs/performance.md). So the first
//! tries carry it only while they miss often: a running share of misses,
//! each first try's outcome weighing 1/32, above 1/10. A single replica
//! that enrolls new users stops carrying it within about a hundred writes;
//! replicas that share their users (no affinity) keep it.

use std::sync::atomic::{AtomicU32, Ordering};

/// The fixed-point one of the share.
const ONE: u32 = 1 << 16;
/// The share of misses above which first tries carry the found read.
const THRESHOLD: u32 = ONE / 10;
/// Each outcome moves the share by 1/2^WEIGHT of the way to 0 or 1.
const WEIGHT: u32 = 5;

/// The running share of first tries that missed.
pub(crate) struct Misses(AtomicU32);

impl Misses {
    /// As if every first try had missed: a replica that has just started
    /// knows no one, and its users may have been written by others.
    pub(crate) const fn new() -> Self {
        Self(AtomicU32::new(ONE))
    }

    /// Whether the next first try's write should carry the found read.
    pub(crate) fn carry_found_read(&self) -> bool {
        self.0.load(Ordering::Relaxed) > THRESHOLD
    }

    /// Counts one first try's write: `missed` when it did not apply.
    pub(crate) fn record(&self, missed: bool) {
        let _always = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |share| {
                Some(if missed {
                    share + ((ONE - share) >> WEIGHT)
                } else {
                    share - (share >> WEIGHT)
                })
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_tries_that_apply_turn_the_found_read_off_and_misses_turn_it_on() {
        let misses = Misses::new();
        assert!(misses.carry_found_read(), "on at start");
        let mut applied = 0;
        while misses.carry_found_read() {
            misses.record(false);
            applied += 1;
        }
        assert!((60..=100).contains(&applied), "{applied} writes");
        for _ in 0..100 {
            misses.record(false);
        }
        // A miss now and then (one in twenty), as on one replica: stays off.
        for round in 0..1000 {
            misses.record(round % 20 == 0);
            assert!(!misses.carry_found_read(), "round {round}");
        }
        // Misses in a row, as when another replica took the users: on
        // within a few.
        let mut missed = 0;
        while !misses.carry_found_read() {
            misses.record(true);
            missed += 1;
        }
        assert!(missed <= 4, "{missed} misses");
        // Half missing, as with two replicas and no affinity: stays on.
        for round in 0..1000 {
            misses.record(round % 2 == 0);
            assert!(misses.carry_found_read(), "round {round}");
        }
        for _ in 0..100_000 {
            misses.record(true);
        }
        assert!(misses.0.load(Ordering::Relaxed) <= ONE, "never above one");
    }
}
