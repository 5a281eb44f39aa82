//! The login-time check for trusted callers: another service's login flow
//! asks whether a user's code is right, here, where the secret lives.

use std::borrow::Cow;

use domain::{EventKind, OtpFactor, SubmittedCode, UserId};

use super::{CodeAttempt, ObjectDetails, Operation, OtpFactors, attempt_code};
use crate::authenticate::Principal;
use crate::error::ApplicationError;
use crate::ports::{Change, Current, FactorWrite, RecoveryWrite};

impl OtpFactors {
    /// Checks `code` against `user_id`'s READY factor for `caller`, whose
    /// token must grant the configured check scope and name an allowed
    /// client (`auth.check_clients`). A right code is accepted
    /// once (its step is recorded: neither it nor an earlier one passes
    /// again); wrong or replayed codes count towards the attempt limit.
    /// Appends `otp.check.succeeded` or `otp.check.failed` (and `otp.locked`
    /// when the limit is reached), acted by the caller; a check while the
    /// user is locked or disabled appends `otp.check.refused_locked` (the
    /// lock is not extended).
    ///
    /// # Errors
    /// `PermissionDenied` without the scope or an allowed client; `InvalidRequest` for a
    /// code outside 1..=200 characters (the user id comes parsed: the
    /// adapters refuse a bad one before anything records it); `NothingToVerify` without a
    /// READY factor; `InvalidCode`, `Reused`, `Locked`, `Disabled`; store failures.
    #[tracing::instrument(name = "CheckOtp", skip_all, fields(user_id = %user, caller = %caller.user_id))]
    pub async fn check_otp(
        &self,
        caller: &Principal,
        user: &UserId,
        code: &str,
    ) -> Result<ObjectDetails, ApplicationError> {
        if !caller.has_scope(&self.settings.check_scope) {
            tracing::info!(caller = %caller.user_id, "login check without the check scope");
            return Err(ApplicationError::PermissionDenied);
        }
        if !self.settings.check_clients.allows(caller) {
            tracing::info!(caller = %caller.user_id, "login check by a client not in auth.check_clients");
            return Err(ApplicationError::PermissionDenied);
        }
        let user = user.clone();
        let code = SubmittedCode::parse(code).map_err(|_| {
            ApplicationError::InvalidRequest(Cow::Borrowed(
                "invalid CheckOTPRequest.Code: value length must be between 1 and 200 runes",
            ))
        })?;
        // The caller acts; the user's organisation is not known to it.
        let context = self.context(caller, None);
        let at = context.at;
        let cipher = self.cipher.clone();
        let owner = user.clone();
        let policy = self.settings.attempts;

        let decide = Box::new(move |current: Current<'_>| {
            let factor = OtpFactor::ready_for_check(current.factor)?;
            let attempt = attempt_code(
                cipher.as_ref(),
                &owner,
                factor,
                &code,
                current.attempts,
                &policy,
                at,
                Some(EventKind::CheckFailed),
                Some(EventKind::CheckRefusedLocked),
            )?;
            Ok(match attempt {
                CodeAttempt::Accepted { step, attempts } => Change {
                    factor: FactorWrite::Put(factor.used(step)),
                    attempts,
                    recovery: RecoveryWrite::Keep,
                    events: vec![EventKind::CheckSucceeded],
                    refusal: None,
                },
                CodeAttempt::Refused(change) => *change,
            })
        });
        let event = self
            .commit(Operation::Check, &user, context, decide)
            .await?;
        Ok(ObjectDetails {
            sequence: event.sequence,
            creation_date: None,
            change_date: event.at,
            resource_owner: None,
        })
    }
}
