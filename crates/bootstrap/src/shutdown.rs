//! Graceful shutdown: on SIGTERM or Ctrl-C, `/readyz` turns 503 at once, the
//! listeners keep accepting for `shutdown.drain_delay` (so load balancers and
//! Kubernetes endpoints stop routing here first), then stop accepting while
//! in-flight requests get `shutdown.timeout` to finish. A second signal ends
//! the process at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;

use application::{NotReady, Readiness};

/// Whether the process is draining; shared by readiness and the runner.
#[derive(Debug, Clone, Default)]
pub struct Draining(Arc<AtomicBool>);

impl Draining {
    /// From now on, readiness fails.
    pub fn start(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether draining has started.
    #[must_use]
    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Readiness that fails as soon as draining starts, else asks `inner`.
pub struct DrainAwareReadiness {
    inner: Arc<dyn Readiness>,
    draining: Draining,
}

impl std::fmt::Debug for DrainAwareReadiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DrainAwareReadiness")
            .field("draining", &self.draining)
            .finish_non_exhaustive()
    }
}

impl DrainAwareReadiness {
    /// Wraps `inner`.
    #[must_use]
    pub fn new(inner: Arc<dyn Readiness>, draining: Draining) -> Self {
        Self { inner, draining }
    }
}

#[async_trait]
impl Readiness for DrainAwareReadiness {
    async fn ready(&self) -> Result<(), NotReady> {
        if self.draining.is_draining() {
            return Err(NotReady::ShuttingDown);
        }
        self.inner.ready().await
    }
}

/// Completes on the first SIGTERM or SIGINT (Ctrl-C).
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = terminate.recv() => tracing::info!(signal = "SIGTERM", "shutdown requested"),
                    _ = tokio::signal::ctrl_c() => tracing::info!(signal = "SIGINT", "shutdown requested"),
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the service");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct AlwaysReady;

    #[async_trait]
    impl Readiness for AlwaysReady {
        async fn ready(&self) -> Result<(), NotReady> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn readiness_fails_once_draining_starts() {
        let draining = Draining::default();
        let readiness = DrainAwareReadiness::new(Arc::new(AlwaysReady), draining.clone());
        assert_eq!(readiness.ready().await, Ok(()));
        draining.start();
        assert_eq!(readiness.ready().await, Err(NotReady::ShuttingDown));
    }
}
