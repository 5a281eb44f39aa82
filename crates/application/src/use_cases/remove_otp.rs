//! Remove: the factor goes, whatever its state.

use domain::{Attempts, EventKind, OtpFactor};

use super::{ObjectDetails, Operation, OtpFactors, refuse_expired};
use crate::authenticate::Principal;
use crate::error::ApplicationError;
use crate::ports::{Change, Current, FactorWrite};

impl OtpFactors {
    /// Removes the signed-in user's OTP factor, pending or READY (a pending
    /// one past `pending_ttl` counts as absent, and goes). The wrong-code
    /// count restarts, so this is how a locked or disabled user recovers.
    ///
    /// # Errors
    /// `RecentAuthRequired` when the sign-in is not recent enough
    /// (`auth.recent_auth_*`); `TooManyChanges` past `totp.max_changes_per_hour`;
    /// `NothingToRemove` without a factor; store failures.
    #[tracing::instrument(name = "RemoveOtp", skip_all, fields(user_id = %principal.user_id))]
    pub async fn remove_otp(
        &self,
        principal: &Principal,
    ) -> Result<ObjectDetails, ApplicationError> {
        let context = self.context(principal, principal.org_id.clone());
        let at = context.at;
        self.settings.recent_auth.require(principal, at)?;
        self.changes.admit(&principal.user_id, at)?;
        let pending_ttl = self.settings.pending_ttl;
        let decide = Box::new(move |current: Current<'_>| {
            let live = OtpFactor::live(current.factor, at, pending_ttl);
            if let Err(error) = OtpFactor::remove(live) {
                return refuse_expired(current.factor, live, error);
            }
            // Removing is how a disabled user recovers: the count restarts.
            let mut change = Change::accepted(FactorWrite::Delete, EventKind::OtpRemoved);
            if current.attempts != Attempts::default() {
                change.attempts = Some(Attempts::default());
            }
            Ok(change)
        });
        let event = self
            .commit(Operation::Remove, &principal.user_id, context, decide)
            .await?;
        Ok(ObjectDetails::of_change(event, principal))
    }
}
