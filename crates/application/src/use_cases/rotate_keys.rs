//! Key rotation: re-seal every stored secret under the active key and in
//! the bound format (owner, parameters and creation time as associated
//! data), in bounded batches, while the service runs. Resumable: each run
//! picks up whatever is still sealed under another key or unbound.

use std::sync::Arc;

use domain::UserId;

use crate::error::ApplicationError;
use crate::ports::{Reseal, SecretCipher, SecretStore};

/// Counts of a rotation run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RotationReport {
    /// Batches processed.
    pub batches: u64,
    /// Stored secrets looked at.
    pub scanned: u64,
    /// Secrets found sealed under another key, or in the earlier unbound
    /// format.
    pub examined: u64,
    /// Secrets re-sealed under the active key, bound.
    pub resealed: u64,
    /// Secrets that changed while being re-sealed (a new factor or a
    /// removal won); the next run looks at them again.
    pub changed_meanwhile: u64,
    /// Secrets that could not be opened (key not configured, or tampered):
    /// left as they are, logged by user id. Keep their key until resolved.
    pub failed: u64,
}

impl RotationReport {
    /// Whether every examined secret is now under the active key.
    #[must_use]
    pub const fn complete(&self) -> bool {
        self.changed_meanwhile == 0 && self.failed == 0
    }
}

/// Re-seals stored secrets under the cipher's active key.
#[derive(Clone)]
pub struct KeyRotation {
    store: Arc<dyn SecretStore>,
    cipher: Arc<dyn SecretCipher>,
}

impl std::fmt::Debug for KeyRotation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRotation")
            .field("active_key", &self.cipher.active_key_id())
            .finish_non_exhaustive()
    }
}

impl KeyRotation {
    /// Rotation over `store` with `cipher`'s keys.
    #[must_use]
    pub fn new(store: Arc<dyn SecretStore>, cipher: Arc<dyn SecretCipher>) -> Self {
        Self { store, cipher }
    }

    /// Re-seals secrets in batches of `batch_size` (each batch one short
    /// transaction), calling `progress` after each batch; stops after
    /// `max_batches` batches when given (then a later run resumes).
    ///
    /// # Errors
    /// Store failures; batches written before the failure stay written.
    pub async fn run(
        &self,
        batch_size: usize,
        max_batches: Option<u64>,
        progress: &mut (dyn FnMut(&RotationReport) + Send),
    ) -> Result<RotationReport, ApplicationError> {
        let batch_size = batch_size.max(1);
        let active = self.cipher.active_key_id().to_owned();
        let mut report = RotationReport::default();
        let mut after: Option<UserId> = None;
        while max_batches.is_none_or(|max| report.batches < max) {
            let found = self
                .store
                .stored_secrets(after.as_ref(), batch_size)
                .await?;
            let Some(last) = found.last() else {
                break;
            };
            after = Some(last.user.clone());
            report.batches += 1;
            report.scanned += found.len() as u64;

            let mut batch = Vec::with_capacity(found.len());
            for stored in found {
                let binding = stored.binding();
                let resealed = match self.cipher.open_for_rotation(&binding, &stored.sealed) {
                    Ok(opened) if opened.current => continue,
                    Ok(opened) => self.cipher.seal(&binding, &opened.secret),
                    Err(error) => Err(error),
                };
                report.examined += 1;
                match resealed {
                    Ok(new) => batch.push(Reseal {
                        user: stored.user,
                        old: stored.sealed,
                        new,
                    }),
                    Err(error) => {
                        report.failed += 1;
                        tracing::error!(
                            user_id = %stored.user,
                            key_id = %stored.sealed.key_id,
                            %error,
                            "secret could not be re-sealed; left under its key"
                        );
                    }
                }
            }
            let attempted = batch.len() as u64;
            let written = self.store.reseal(batch).await?;
            report.resealed += written;
            report.changed_meanwhile += attempted.saturating_sub(written);
            progress(&report);
        }
        tracing::info!(
            target: "audit",
            event = "keys.rotated",
            active_key = %active,
            scanned = report.scanned,
            examined = report.examined,
            resealed = report.resealed,
            changed_meanwhile = report.changed_meanwhile,
            failed = report.failed,
            "key rotation run finished"
        );
        Ok(report)
    }
}
