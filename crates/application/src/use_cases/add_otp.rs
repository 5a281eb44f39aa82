//! Add: a new pending factor with a fresh secret, shown once.

use secrecy::SecretString;

use domain::{EventKind, OtpFactor, TotpKey, otpauth_url};

use super::target::{Callers, Target};
use super::{ObjectDetails, Operation, OtpFactors};
use crate::authenticate::Principal;
use crate::error::ApplicationError;
use crate::ports::{Change, CipherError, Current, FactorWrite, SealBinding};

/// The answer to Add: the otpauth URL and the base32 secret (both secret),
/// and the details of the `otp.added` event.
#[derive(Debug)]
pub struct AddedOtp {
    /// `otpauth://totp/...`, to show as a QR code.
    pub url: SecretString,
    /// The base32 secret, for manual entry.
    pub secret: SecretString,
    /// The event's details; `creation_date` = `change_date`.
    pub details: ObjectDetails,
}

impl OtpFactors {
    /// Adds a pending OTP factor for the signed-in user, replacing a pending
    /// one (whose secret stops working). A READY factor refuses; a pending
    /// one past `pending_ttl` counts as absent.
    ///
    /// # Errors
    /// `RecentAuthRequired` when a factor (pending or READY) exists and the
    /// sign-in is not recent enough (`auth.recent_auth_*`); `AlreadySetUp`
    /// when a READY factor exists; `TooManyChanges` past
    /// `totp.max_changes_per_hour`; store failures.
    #[tracing::instrument(name = "AddOtp", skip_all, fields(user_id = %principal.user_id))]
    pub async fn add_otp(&self, principal: &Principal) -> Result<AddedOtp, ApplicationError> {
        self.add_to(principal, Target::own(principal)).await
    }

    /// Add for `user_id` (`RegisterTOTP`): the same rules as
    /// [`OtpFactors::add_otp`], for the user themself or an administrator
    /// (see the `target` module); the caller is the events' actor and the
    /// one whose sign-in must be recent.
    ///
    /// # Errors
    /// `InvalidRequest` for a bad user id, `PermissionDenied` for a caller
    /// who may not act on the user; then as [`OtpFactors::add_otp`].
    #[tracing::instrument(name = "RegisterTotp", skip_all, fields(caller = %caller.user_id))]
    pub async fn add_otp_for(
        &self,
        caller: &Principal,
        user_id: &str,
    ) -> Result<AddedOtp, ApplicationError> {
        let target = self
            .authorize(caller, user_id, "RegisterTOTPRequest", Callers::SelfOrAdmin)
            .await?;
        self.add_to(caller, target).await
    }

    async fn add_to(
        &self,
        principal: &Principal,
        target: Target,
    ) -> Result<AddedOtp, ApplicationError> {
        let context = self.context(principal, target.owner.clone());
        let at = context.at;
        self.changes.admit(&target.user, at)?;
        let recent_auth = self.settings.recent_auth.require(principal, at);
        let params = self.settings.params;
        let pending_ttl = self.settings.pending_ttl;
        let key = TotpKey::new(self.secrets.generate(), params);
        let sealed = self
            .cipher
            .seal(
                &SealBinding {
                    owner: &target.user,
                    params,
                    created_at: at,
                },
                key.secret(),
            )
            .map_err(|error| {
                tracing::error!(%error, "sealing a new secret failed");
                ApplicationError::Internal
            })?;

        let decide = Box::new(move |current: Current<'_>| {
            let live = OtpFactor::live(current.factor, at, pending_ttl);
            if live.is_some() {
                recent_auth.clone()?;
            }
            let factor = OtpFactor::add(live, sealed.clone(), params, at)?;
            Ok(Change::accepted(
                FactorWrite::Put(factor),
                EventKind::OtpAdded,
            ))
        });
        let event = self
            .commit(Operation::Enroll, &target.user, context, decide)
            .await?;

        let mut details = ObjectDetails::of_change(event, &target);
        details.creation_date = Some(event.at);
        Ok(AddedOtp {
            url: otpauth_url(&self.settings.issuer, &target.account, &key),
            secret: key.secret().to_base32(),
            details,
        })
    }
}

/// How a sealed secret that will not open is answered: the cause is for the
/// operator, the client learns only that something broke inside.
pub(super) fn cipher_failure(error: &CipherError) -> ApplicationError {
    tracing::error!(%error, "stored secret could not be opened");
    ApplicationError::Internal
}
