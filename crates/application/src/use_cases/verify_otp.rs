//! Verify: the first right code makes the pending factor READY.

use std::borrow::Cow;

use domain::{EventKind, OtpFactor, SubmittedCode};

use super::{CodeAttempt, ObjectDetails, Operation, OtpFactors, attempt_code, refuse_expired};
use crate::authenticate::Principal;
use crate::error::ApplicationError;
use crate::ports::{Change, Current, FactorWrite};

impl OtpFactors {
    /// Checks `code` against the pending factor (time steps T-skew..=T+skew)
    /// and marks it READY, recording the accepted step so the code can never
    /// be replayed at login. Wrong codes count towards the attempt limit.
    ///
    /// # Errors
    /// `InvalidRequest` for a code outside 1..=200 characters; `NothingToVerify`
    /// (also for a pending factor past `pending_ttl`), `AlreadyVerified`,
    /// `InvalidCode`, `Locked`, `Disabled` per the contract and the policy; store failures.
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
        let context = self.context(principal, principal.org_id.clone());
        let at = context.at;
        let cipher = self.cipher.clone();
        let owner = principal.user_id.clone();
        let settings = self.settings.clone();

        let decide = Box::new(move |current: Current<'_>| {
            let live = OtpFactor::live(current.factor, at, settings.pending_ttl);
            let pending = match OtpFactor::pending_for_verify(live) {
                Ok(pending) => pending,
                Err(error) => return refuse_expired(current.factor, live, error),
            };
            let attempt = attempt_code(
                cipher.as_ref(),
                &owner,
                pending,
                &code,
                current.attempts,
                &settings.attempts,
                at,
                None,
                None,
            )?;
            Ok(match attempt {
                CodeAttempt::Accepted { step, attempts } => Change {
                    factor: FactorWrite::Put(pending.verified(at).used(step)),
                    attempts,
                    events: vec![EventKind::OtpVerified],
                    refusal: None,
                },
                CodeAttempt::Refused(change) => change,
            })
        });
        let event = self
            .commit(Operation::Verify, &principal.user_id, context, decide)
            .await?;
        Ok(ObjectDetails::of_change(event, principal))
    }
}
