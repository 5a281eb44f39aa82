//! The verified-JWT cache: a token that passed every check is remembered
//! under its SHA-256 (never the token itself), so the same token presented
//! again skips the signature verification, the JSON parsing and the claim
//! checks.
//!
//! An entry is usable until the earlier of the token's `exp` (without the
//! leeway the first check allowed) and `max_age` after it was verified; the
//! number of entries is bounded (`capacity`). Rejections are never cached:
//! a bad token costs the full check each time, as without the cache.
//!
//! What it changes: a token accepted once stays accepted for up to
//! `max_age` even if the issuer stops publishing its signing key meanwhile
//! (the key set itself is only refetched for an unknown `kid`, so without
//! the cache a removed key is also honoured until a refetch). A JWT is
//! never revocable locally before its `exp`; introspection is the way to
//! learn of a revocation, and its answers have their own cache
//! (`auth.introspection_cache_ttl`).

use std::time::Duration;

use application::Principal;

use crate::introspection::{CacheKey, ExpiringCache};

/// Verified principals by token hash.
pub(crate) struct VerifiedTokens {
    entries: ExpiringCache<Principal>,
    max_age_ms: i64,
}

impl VerifiedTokens {
    /// A cache of at most `capacity` tokens, each kept at most `max_age`;
    /// `None` (no cache) when either is zero.
    pub(crate) fn new(capacity: usize, max_age: Duration) -> Option<Self> {
        let max_age_ms = i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
        (capacity > 0 && max_age_ms > 0).then(|| Self {
            entries: ExpiringCache::new(max_age_ms, capacity),
            max_age_ms,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The principal of `key`'s token if it was verified and is still usable at `now_ms`.
    pub(crate) fn get(&self, key: &CacheKey, now_ms: i64) -> Option<Principal> {
        self.entries.lookup(key, now_ms)
    }

    /// Remembers a verified token whose `exp` is `exp_secs` (seconds since the epoch).
    pub(crate) fn put(&self, key: CacheKey, principal: &Principal, exp_secs: i64, now_ms: i64) {
        let expires_ms = exp_secs
            .saturating_mul(1000)
            .min(now_ms.saturating_add(self.max_age_ms));
        self.entries
            .insert(key, principal.clone(), expires_ms, now_ms);
    }
}

#[cfg(test)]
mod tests {
    use domain::UserId;

    use super::*;

    fn principal(id: &str) -> Principal {
        Principal::of(UserId::parse(id).unwrap())
    }

    #[test]
    fn zero_capacity_or_age_is_no_cache() {
        assert!(VerifiedTokens::new(0, Duration::from_secs(60)).is_none());
        assert!(VerifiedTokens::new(10, Duration::ZERO).is_none());
        assert!(VerifiedTokens::new(10, Duration::from_secs(60)).is_some());
    }

    #[test]
    fn an_entry_ends_at_the_tokens_exp() {
        let cache = VerifiedTokens::new(10, Duration::from_secs(300)).unwrap();
        let key = CacheKey::of("token");
        // Verified at t = 1000 s, expiring at 1010 s: well before max age.
        cache.put(key, &principal("u"), 1_010, 1_000_000);
        assert_eq!(cache.get(&key, 1_009_999), Some(principal("u")));
        assert_eq!(cache.get(&key, 1_010_000), None);
    }

    #[test]
    fn an_entry_never_outlives_max_age() {
        let cache = VerifiedTokens::new(10, Duration::from_secs(60)).unwrap();
        let key = CacheKey::of("token");
        // exp an hour away: the entry still ends 60 s after verification.
        cache.put(key, &principal("u"), 1_000 + 3_600, 1_000_000);
        assert_eq!(cache.get(&key, 1_059_999), Some(principal("u")));
        assert_eq!(cache.get(&key, 1_060_000), None);
    }

    #[test]
    fn an_expired_token_is_not_kept() {
        let cache = VerifiedTokens::new(10, Duration::from_secs(60)).unwrap();
        let key = CacheKey::of("token");
        // Accepted within the leeway, exp already past: nothing to reuse.
        cache.put(key, &principal("u"), 999, 1_000_000);
        assert_eq!(cache.len(), 0);
        assert_eq!(cache.get(&key, 1_000_000), None);
    }

    #[test]
    fn another_token_misses() {
        let cache = VerifiedTokens::new(10, Duration::from_secs(60)).unwrap();
        cache.put(CacheKey::of("token-a"), &principal("a"), 5_000, 1_000_000);
        assert_eq!(cache.get(&CacheKey::of("token-b"), 1_000_001), None);
        assert_eq!(
            cache.get(&CacheKey::of("token-a"), 1_000_001),
            Some(principal("a"))
        );
    }

    #[test]
    fn the_entry_count_is_bounded() {
        let cache = VerifiedTokens::new(100, Duration::from_secs(60)).unwrap();
        for i in 0..10_000 {
            cache.put(
                CacheKey::of(&format!("token-{i}")),
                &principal("u"),
                5_000,
                1_000_000,
            );
            assert!(cache.len() <= 100);
        }
        // The latest is always there.
        assert!(cache.get(&CacheKey::of("token-9999"), 1_000_001).is_some());
    }
}
