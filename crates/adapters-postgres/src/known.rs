//! What this replica last wrote of each recently changed user: the state a
//! change of that user may decide on without reading it first.
//!
//! A change decides on a user's state and writes it back with a
//! compare-and-swap on the stream row's version, which every write of the
//! user's state moves (a change, a re-seal, the purge; see the migration
//! `stream_version`). The state this replica committed last is therefore as
//! good as a fresh read for deciding, as long as the swap still finds that
//! version: the change's first try writes on it in one round trip instead
//! of two. If anything else wrote the user since (another replica, the
//! purge, a re-seal), the swap finds another version and writes nothing;
//! the change decides again on the state that write found (where first
//! tries miss often, `misses`: two round trips, as many as a read and a
//! write for a user this replica does not know) or on a read (three). So a
//! known state gone stale costs at most one round trip, and never gives a
//! wrong answer: nothing is answered from it that the swap did not confirm
//! (a decision that writes nothing is always decided again on a read).
//!
//! Bounded in entries and in age: two generations of at most half the
//! entries each (the older one is dropped whole when the newer fills), and
//! an entry older than the age limit counts as unknown.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use domain::{OtpFactor, RecoveryCodes};

use crate::statements::Head;

/// What became of a known state a change took (`otp.store.known_states`
/// by `outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Use {
    /// The decision on it was written: the change made no read.
    Applied,
    /// Its write found another version (another replica, the purge or a
    /// re-seal wrote the user since): decided again on what it found, or
    /// on a read.
    Stale,
    /// The decision on it wrote nothing, so it was decided again on a read.
    Unused,
}

impl Use {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Stale => "stale",
            Self::Unused => "unused",
        }
    }
}

/// Counts one use of a known state.
pub(crate) fn count(used: Use) {
    // `event!` with an explicit level: a dotted field name is ambiguous
    // to `info!`'s parser.
    tracing::event!(
        target: "otp.metrics",
        tracing::Level::INFO,
        monotonic_counter.otp.store.known_states = 1_u64,
        outcome = used.as_str()
    );
}

/// The user's state as one read found it, or as one applied write left it.
#[derive(Clone)]
pub(crate) struct State {
    pub head: Head,
    pub factor: Option<OtpFactor>,
    pub recovery: Option<RecoveryCodes>,
}

/// The states this replica last committed, per user.
pub(crate) struct KnownStates {
    generations: Mutex<Generations>,
    /// Entries per generation.
    half: usize,
    ttl: Duration,
}

struct Generations {
    newer: HashMap<String, (Instant, State)>,
    older: HashMap<String, (Instant, State)>,
}

impl KnownStates {
    /// Keeps up to `entries` users' states (an odd count rounded up) for
    /// up to `ttl` each; `None` for `entries` 0 or a zero `ttl` (nothing
    /// kept).
    pub(crate) fn new(entries: usize, ttl: Duration) -> Option<Self> {
        (entries > 0 && !ttl.is_zero()).then(|| {
            let half = entries.div_ceil(2);
            Self {
                generations: Mutex::new(Generations {
                    newer: HashMap::with_capacity(half),
                    older: HashMap::new(),
                }),
                half,
                ttl,
            }
        })
    }

    /// Takes `user`'s known state out, if one is kept and young enough: a
    /// change puts back what it committed (see [`KnownStates::remember`]),
    /// so a change that fails or whose outcome is unknown leaves nothing.
    pub(crate) fn take(&self, user: &str) -> Option<State> {
        let (at, state) = {
            let mut generations = self.lock();
            let entry = generations.newer.remove(user);
            entry.or_else(|| generations.older.remove(user))?
        };
        (at.elapsed() < self.ttl).then_some(state)
    }

    /// Keeps `state` as `user`'s, committed (or read) just now.
    pub(crate) fn remember(&self, user: &str, state: State) {
        let mut generations = self.lock();
        if generations.newer.len() >= self.half && !generations.newer.contains_key(user) {
            generations.older =
                std::mem::replace(&mut generations.newer, HashMap::with_capacity(self.half));
        }
        generations.older.remove(user);
        generations
            .newer
            .insert(user.to_owned(), (Instant::now(), state));
    }

    /// Users whose state is kept (both generations, however old).
    #[cfg(test)]
    fn len(&self) -> usize {
        let generations = self.lock();
        generations.newer.len() + generations.older.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        // The maps stay consistent whatever panicked while one was held:
        // every operation on them is a single insert or remove.
        self.generations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(version: i64) -> State {
        State {
            head: Head {
                version,
                ..Head::NONE
            },
            factor: None,
            recovery: None,
        }
    }

    #[test]
    fn a_taken_state_is_gone_until_remembered_again() {
        let known = KnownStates::new(8, Duration::from_secs(60)).unwrap();
        known.remember("u", state(3));
        assert_eq!(known.take("u").map(|s| s.head.version), Some(3));
        assert!(known.take("u").is_none());
        known.remember("u", state(4));
        known.remember("u", state(5));
        assert_eq!(known.take("u").map(|s| s.head.version), Some(5));
        assert!(known.take("v").is_none());
    }

    #[test]
    fn at_most_the_configured_entries_are_kept_dropping_the_oldest_first() {
        let known = KnownStates::new(4, Duration::from_secs(60)).unwrap();
        for user in ["a", "b", "c", "d", "e"] {
            known.remember(user, state(1));
        }
        assert!(known.len() <= 4, "{}", known.len());
        // The newest two generations hold the newest users.
        assert!(known.take("e").is_some());
        assert!(known.take("d").is_some());
        assert!(known.take("a").is_none());
        // Remembering a user already kept does not turn a generation over.
        let known = KnownStates::new(4, Duration::from_secs(60)).unwrap();
        known.remember("a", state(1));
        known.remember("b", state(1));
        known.remember("b", state(2));
        assert!(known.take("a").is_some());
    }

    #[test]
    fn a_state_older_than_the_age_limit_is_unknown() {
        let known = KnownStates::new(8, Duration::from_millis(20)).unwrap();
        known.remember("u", state(1));
        std::thread::sleep(Duration::from_millis(40));
        assert!(known.take("u").is_none());
    }

    #[test]
    fn no_entries_or_no_age_keeps_nothing() {
        assert!(KnownStates::new(0, Duration::from_secs(60)).is_none());
        assert!(KnownStates::new(8, Duration::ZERO).is_none());
    }
}
