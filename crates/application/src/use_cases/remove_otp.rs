//! Remove: the factor goes, whatever its state.

use domain::{Attempts, EventKind, OtpFactor};

use super::target::{Callers, Target};
use super::{ObjectDetails, Operation, OtpFactors, refuse_expired};
use crate::authenticate::Principal;
use crate::error::ApplicationError;
use crate::ports::{Change, Current, FactorWrite, RecoveryWrite};

impl OtpFactors {
    /// Removes the signed-in user's OTP factor, pending or READY (a pending
    /// one past `pending_ttl` counts as absent, and goes). The wrong-code
    /// count restarts, so this is how a locked or disabled user recovers.
    /// The user's recovery codes go with the factor (`recovery_codes.removed`
    /// after `otp.removed`).
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
        self.remove_from(principal, Target::own(principal)).await
    }

    /// Remove for `user_id`: `RemoveTOTP` ([`Callers::SelfOrAdmin`]) and
    /// `RemoveHumanAuthFactorOTP` ([`Callers::AdminOnly`]), the same rules
    /// as [`OtpFactors::remove_otp`] (the caller is the event's actor and
    /// the one whose sign-in must be recent).
    ///
    /// # Errors
    /// `InvalidRequest` for a bad user id, `PermissionDenied` for a caller
    /// who may not act on the user; then as [`OtpFactors::remove_otp`].
    #[tracing::instrument(name = "RemoveTotp", skip_all, fields(caller = %caller.user_id))]
    pub async fn remove_otp_for(
        &self,
        caller: &Principal,
        user_id: &str,
        callers: Callers,
    ) -> Result<ObjectDetails, ApplicationError> {
        let request = match callers {
            Callers::SelfOrAdmin => "RemoveTOTPRequest",
            Callers::AdminOnly => "RemoveHumanAuthFactorOTPRequest",
        };
        let target = self.authorize(caller, user_id, request, callers).await?;
        self.remove_from(caller, target).await
    }

    async fn remove_from(
        &self,
        principal: &Principal,
        target: Target,
    ) -> Result<ObjectDetails, ApplicationError> {
        let context = self.context(principal, target.owner.clone());
        let at = context.at;
        self.settings.recent_auth.require(principal, at)?;
        self.changes.admit(&target.user, at)?;
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
            // Recovery codes back up this factor: they go with it, so none
            // outlives what it protected (a new factor needs new codes).
            if current.recovery.is_some() {
                change.recovery = RecoveryWrite::Delete;
                change.events.push(EventKind::RecoveryCodesRemoved);
            }
            Ok(change)
        });
        let event = self
            .commit(Operation::Remove, &target.user, context, decide)
            .await?;
        Ok(ObjectDetails::of_change(event, &target))
    }
}
