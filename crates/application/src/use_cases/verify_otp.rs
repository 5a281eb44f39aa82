//! Verify: the first right code makes the pending factor READY.

use std::borrow::Cow;

use domain::{EventKind, OtpFactor, SubmittedCode};

use super::target::{Callers, Target};
use super::{CodeAttempt, ObjectDetails, Operation, OtpFactors, attempt_code, refuse_expired};
use crate::authenticate::Principal;
use crate::error::ApplicationError;
use crate::ports::{Change, Current, FactorWrite, RecoveryWrite};

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
        self.verify_for(
            principal,
            Target::own(principal),
            "VerifyMyAuthFactorOTPRequest",
            code,
        )
        .await
    }

    /// Verify for `user_id` (`VerifyTOTPRegistration`): the same rules as
    /// [`OtpFactors::verify_otp`], for the user themself or an administrator.
    ///
    /// # Errors
    /// `InvalidRequest` for a bad user id, `PermissionDenied` for a caller
    /// who may not act on the user; then as [`OtpFactors::verify_otp`].
    #[tracing::instrument(name = "VerifyTotpRegistration", skip_all, fields(caller = %caller.user_id))]
    pub async fn verify_otp_for(
        &self,
        caller: &Principal,
        user_id: &str,
        code: &str,
    ) -> Result<ObjectDetails, ApplicationError> {
        const REQUEST: &str = "VerifyTOTPRegistrationRequest";
        let target = self
            .authorize(caller, user_id, REQUEST, Callers::SelfOrAdmin)
            .await?;
        self.verify_for(caller, target, REQUEST, code).await
    }

    async fn verify_for(
        &self,
        principal: &Principal,
        target: Target,
        request: &str,
        code: &str,
    ) -> Result<ObjectDetails, ApplicationError> {
        let code = SubmittedCode::parse(code).map_err(|_| {
            ApplicationError::InvalidRequest(Cow::Owned(format!(
                "invalid {request}.Code: value length must be between 1 and 200 runes"
            )))
        })?;
        let context = self.context(principal, target.owner.clone());
        let at = context.at;
        let cipher = self.cipher.clone();
        let owner = target.user.clone();
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
                    recovery: RecoveryWrite::Keep,
                    events: vec![EventKind::OtpVerified],
                    refusal: None,
                },
                CodeAttempt::Refused(change) => *change,
            })
        });
        let event = self
            .commit(Operation::Verify, &target.user, context, decide)
            .await?;
        Ok(ObjectDetails::of_change(event, &target))
    }
}
