//! `/readyz` answers reused for a short while: a flood of probes (the
//! endpoint is unauthenticated) costs at most one database check per
//! `http.readiness_cache`, whatever the probe rate.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio::time::Instant;

use application::{NotReady, Readiness};

/// Readiness that asks `inner` at most once per `ttl`; probes arriving while
/// a check runs wait for it and share its answer.
pub struct CachedReadiness {
    inner: Arc<dyn Readiness>,
    ttl: Duration,
    last: Mutex<Option<(Instant, Result<(), NotReady>)>>,
}

impl std::fmt::Debug for CachedReadiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedReadiness")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl CachedReadiness {
    /// Wraps `inner`; a zero `ttl` asks it every time.
    #[must_use]
    pub fn new(inner: Arc<dyn Readiness>, ttl: Duration) -> Self {
        Self {
            inner,
            ttl,
            last: Mutex::new(None),
        }
    }
}

#[async_trait]
impl Readiness for CachedReadiness {
    async fn ready(&self) -> Result<(), NotReady> {
        if self.ttl.is_zero() {
            return self.inner.ready().await;
        }
        // Held across the check: concurrent probes queue here, then reuse it.
        let mut last = self.last.lock().await;
        if let Some((at, answer)) = last.as_ref()
            && at.elapsed() < self.ttl
        {
            return *answer;
        }
        let answer = self.inner.ready().await;
        *last = Some((Instant::now(), answer));
        answer
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[derive(Default)]
    struct Counting(AtomicUsize);

    #[async_trait]
    impl Readiness for Counting {
        async fn ready(&self) -> Result<(), NotReady> {
            let calls = self.0.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            if calls.is_multiple_of(2) {
                Ok(())
            } else {
                Err(NotReady::Unreachable)
            }
        }
    }

    #[tokio::test]
    async fn one_check_per_period_whatever_the_probe_rate() {
        let inner = Arc::new(Counting::default());
        let cached = Arc::new(CachedReadiness::new(inner.clone(), Duration::from_secs(1)));
        let probes: Vec<_> = (0..50)
            .map(|_| {
                let cached = cached.clone();
                tokio::spawn(async move { cached.ready().await })
            })
            .collect();
        for probe in probes {
            assert_eq!(probe.await.unwrap(), Ok(()));
        }
        assert_eq!(inner.0.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        // A new period asks again, and a failure is cached the same way.
        assert_eq!(cached.ready().await, Err(NotReady::Unreachable));
        assert_eq!(cached.ready().await, Err(NotReady::Unreachable));
        assert_eq!(inner.0.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn zero_turns_the_cache_off() {
        let inner = Arc::new(Counting::default());
        let cached = CachedReadiness::new(inner.clone(), Duration::ZERO);
        let _ = cached.ready().await;
        let _ = cached.ready().await;
        assert_eq!(inner.0.load(Ordering::SeqCst), 2);
    }
}
