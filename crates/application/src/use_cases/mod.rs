//! The four calls of the contract, one file each, sharing the ports held by
//! [`OtpFactors`].

mod add_otp;
mod list_factors;
mod remove_otp;
mod verify_otp;

use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};

use domain::{FactorEvent, OrgId, TotpParams};

pub use add_otp::AddedOtp;
pub use list_factors::ListedFactor;

use crate::authenticate::Principal;
use crate::error::ApplicationError;
use crate::ports::{ChangeContext, Clock, Decide, FactorStore, SecretCipher, SecretSource};

/// Deployment settings of new factors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpSettings {
    /// The otpauth URL's issuer (the name apps show).
    pub issuer: String,
    /// Parameters of new factors; enrolled factors keep their own.
    pub params: TotpParams,
}

/// The contract's `zitadel.v1.ObjectDetails` of a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectDetails {
    /// The event's number in the user's stream.
    pub sequence: u64,
    /// Set on Add only (the event's time), as ZITADEL answers.
    pub creation_date: Option<DateTime<Utc>>,
    /// The event's time.
    pub change_date: DateTime<Utc>,
    /// The user's organisation.
    pub resource_owner: Option<OrgId>,
}

impl ObjectDetails {
    fn of_change(event: FactorEvent, principal: &Principal) -> Self {
        Self {
            sequence: event.sequence,
            creation_date: None,
            change_date: event.at,
            resource_owner: principal.org_id.clone(),
        }
    }
}

/// The OTP factor use cases over their ports.
#[derive(Clone)]
pub struct OtpFactors {
    store: Arc<dyn FactorStore>,
    cipher: Arc<dyn SecretCipher>,
    secrets: Arc<dyn SecretSource>,
    clock: Arc<dyn Clock>,
    settings: TotpSettings,
}

impl std::fmt::Debug for OtpFactors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtpFactors")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl OtpFactors {
    /// Wires the use cases to their ports.
    #[must_use]
    pub fn new(
        store: Arc<dyn FactorStore>,
        cipher: Arc<dyn SecretCipher>,
        secrets: Arc<dyn SecretSource>,
        clock: Arc<dyn Clock>,
        settings: TotpSettings,
    ) -> Self {
        Self {
            store,
            cipher,
            secrets,
            clock,
            settings,
        }
    }

    /// Now, at the microsecond precision every store keeps, so the time
    /// answered equals the time stored.
    fn now(&self) -> DateTime<Utc> {
        self.clock.now().trunc_subsecs(6)
    }

    /// Runs `decide` in the store for the principal's factor, and writes the
    /// audit line of the event it appended.
    async fn commit(
        &self,
        principal: &Principal,
        context: ChangeContext,
        decide: Decide,
    ) -> Result<FactorEvent, ApplicationError> {
        let event = self
            .store
            .change(&principal.user_id, context, decide)
            .await?;
        audit(principal, &event);
        Ok(event)
    }

    fn context(&self, principal: &Principal) -> ChangeContext {
        ChangeContext {
            at: self.now(),
            actor: principal.user_id.clone(),
            resource_owner: principal.org_id.clone(),
        }
    }
}

/// One structured audit line per appended event (never a secret or a code).
fn audit(principal: &Principal, event: &FactorEvent) {
    tracing::info!(
        target: "audit",
        event = event.kind.as_str(),
        user_id = %principal.user_id,
        sequence = event.sequence,
        at = %event.at.to_rfc3339(),
        "factor event appended"
    );
}

/// Unix seconds of a time; times before 1970 count as 0 (TOTP has no steps there).
fn unix_seconds(at: DateTime<Utc>) -> u64 {
    u64::try_from(at.timestamp()).unwrap_or(0)
}
