//! Verify: the first right code makes the pending factor READY.

use std::borrow::Cow;

use domain::{EventKind, FactorError, OtpFactor, SubmittedCode, TotpKey};

use super::add_otp::cipher_failure;
use super::{ObjectDetails, OtpFactors, unix_seconds};
use crate::authenticate::Principal;
use crate::error::ApplicationError;
use crate::ports::Change;

impl OtpFactors {
    /// Checks `code` against the pending factor (time steps T-skew..=T+skew)
    /// and marks it READY.
    ///
    /// # Errors
    /// `InvalidRequest` for a code outside 1..=200 characters; `NothingToVerify`,
    /// `AlreadyVerified`, `InvalidCode` per the contract; store failures.
    #[tracing::instrument(name = "VerifyOtp", skip_all, fields(user_id = %principal.user_id))]
    pub async fn verify_otp(
        &self,
        principal: &Principal,
        code: &str,
    ) -> Result<ObjectDetails, ApplicationError> {
        let code = SubmittedCode::parse(code).map_err(|_| {
            ApplicationError::InvalidRequest(Cow::Borrowed(
                "invalid VerifyMyAuthFactorOTPRequest.Code: value length must be between 1 and 200 runes",
            ))
        })?;
        let context = self.context(principal);
        let at = context.at;
        let cipher = self.cipher.clone();
        let owner = principal.user_id.clone();

        let decide = Box::new(move |current: Option<&OtpFactor>| {
            let pending = OtpFactor::pending_for_verify(current)?;
            let secret = cipher
                .open(&owner, &pending.secret)
                .map_err(|e| cipher_failure(&e))?;
            let key = TotpKey::new(secret, pending.params);
            key.verify(&code, unix_seconds(at))
                .ok_or(FactorError::InvalidCode)?;
            Ok(Change {
                factor: Some(pending.verified(at)),
                event: EventKind::OtpVerified,
            })
        });
        let event = self.commit(principal, context, decide).await?;
        Ok(ObjectDetails::of_change(event, principal))
    }
}
