//! Remove: the factor goes, whatever its state.

use domain::{EventKind, OtpFactor};

use super::{ObjectDetails, OtpFactors};
use crate::authenticate::Principal;
use crate::error::ApplicationError;
use crate::ports::Change;

impl OtpFactors {
    /// Removes the signed-in user's OTP factor, pending or READY.
    ///
    /// # Errors
    /// `NothingToRemove` without a factor; store failures.
    #[tracing::instrument(name = "RemoveOtp", skip_all, fields(user_id = %principal.user_id))]
    pub async fn remove_otp(
        &self,
        principal: &Principal,
    ) -> Result<ObjectDetails, ApplicationError> {
        let context = self.context(principal);
        let decide = Box::new(|current: Option<&OtpFactor>| {
            OtpFactor::remove(current)?;
            Ok(Change {
                factor: None,
                event: EventKind::OtpRemoved,
            })
        });
        let event = self.commit(principal, context, decide).await?;
        Ok(ObjectDetails::of_change(event, principal))
    }
}
