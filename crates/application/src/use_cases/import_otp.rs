//! Import: a factor from a TOTP secret exported by another system (an
//! administrator's call, and the bulk migration `otp-service import`).
//!
//! The secret is checked (base32, at least 128 bits unless
//! `import.allow_legacy_80_bit`, parameters the service supports), sealed
//! bound to the factor like any other, and stored in one `FactorStore::change`
//! that appends `otp.imported`. A READY factor refuses the import with Add's
//! error (`COMMAND-do9se`); a live pending factor is replaced, as Add
//! replaces it (its secret never worked at login).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use secrecy::{ExposeSecret, SecretString};

use domain::{
    EventKind, FactorError, OrgId, OtpFactor, TotpAlgorithm, TotpKey, TotpParams, TotpParamsError,
    TotpSecret, UserId,
};

use super::target::Callers;
use super::{ObjectDetails, Operation, OtpFactors, target::Target};
use crate::authenticate::Principal;
use crate::error::ApplicationError;
use crate::ports::{Change, ChangeContext, Current, FactorWrite, SealBinding};

/// The actor recorded on the events of the bulk import (no token names one).
pub const BULK_IMPORT_ACTOR: &str = "otp-service-import";

/// A secret exported by another system and the parameters it runs with.
/// Proto3 defaults mean the otpauth defaults: an empty algorithm is SHA1,
/// zero digits 6, a zero period 30 seconds.
pub struct ImportOtp {
    /// The base32 secret (any case, spaces or hyphens, padding optional).
    pub secret: SecretString,
    /// `SHA1`, `SHA256` or `SHA512` (any case); empty: SHA1.
    pub algorithm: String,
    /// 6 or 8; 0: 6.
    pub digits: u32,
    /// Seconds per step, 10 to 300; 0: 30.
    pub period: u32,
    /// READY at once (the secret is on the user's phone already), else
    /// NOT_READY until the user's first code.
    pub ready: bool,
}

/// Never the secret.
impl fmt::Debug for ImportOtp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImportOtp")
            .field("secret", &"<redacted>")
            .field("algorithm", &self.algorithm)
            .field("digits", &self.digits)
            .field("period", &self.period)
            .field("ready", &self.ready)
            .finish()
    }
}

/// What one line of a bulk import came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkImported {
    /// Stored, with the `otp.imported` event's details.
    Imported(ObjectDetails),
    /// The user's READY factor already holds this secret with these
    /// parameters (an earlier run imported it): nothing written.
    AlreadyImported,
}

impl OtpFactors {
    /// An administrator imports `import` as `user_id`'s factor
    /// (`otp.v1.OtpImportService/ImportTOTP`, `POST
    /// /v2/users/{user_id}/totp/_import`). Administrators only, as the
    /// management calls: the user themself may not import.
    ///
    /// # Errors
    /// `InvalidRequest` for a bad user id, secret or parameter;
    /// `PermissionDenied` for a caller who is no administrator of the user;
    /// `AlreadySetUp` when a READY factor exists; `RecentAuthRequired` when
    /// a pending factor would be replaced and the caller's sign-in is not
    /// recent enough; `TooManyChanges`; store failures.
    #[tracing::instrument(name = "ImportTotp", skip_all, fields(caller = %caller.user_id))]
    pub async fn import_otp_for(
        &self,
        caller: &Principal,
        user_id: &str,
        import: &ImportOtp,
    ) -> Result<ObjectDetails, ApplicationError> {
        let target = self
            .authorize(caller, user_id, "ImportTOTPRequest", Callers::AdminOnly)
            .await?;
        let key = self.imported_key(import, "ImportTOTPRequest")?;
        let context = self.context(caller, target.owner.clone());
        let at = context.at;
        self.changes.admit(&target.user, at)?;
        let recent_auth = self.settings.recent_auth.require(caller, at);
        let sealed = self.seal_imported(&target.user, &key, at)?;
        let (params, ready, pending_ttl) = (key.params(), import.ready, self.settings.pending_ttl);
        let decide = Box::new(move |current: Current<'_>| {
            let live = OtpFactor::live(current.factor, at, pending_ttl);
            if live.is_some() {
                recent_auth.clone()?;
            }
            let factor = OtpFactor::import(live, sealed.clone(), params, ready, at)?;
            Ok(Change::accepted(
                FactorWrite::Put(factor),
                EventKind::OtpImported,
            ))
        });
        let event = self
            .commit(Operation::Import, &target.user, context, decide)
            .await?;
        Ok(ObjectDetails::of_change(event, &target))
    }

    /// One line of the bulk import: `import` (READY or not, as it says) as
    /// `user`'s factor, with `org` as the events' resource owner, by
    /// [`BULK_IMPORT_ACTOR`]. Idempotent: when the user's READY factor holds
    /// the same secret and parameters already, nothing is written. Not
    /// rate limited; no token is involved.
    ///
    /// # Errors
    /// `InvalidRequest` for a bad secret or parameter; `AlreadySetUp` when
    /// a READY factor with another secret or other parameters exists; store
    /// failures.
    pub async fn import_bulk(
        &self,
        user: &UserId,
        org: Option<OrgId>,
        import: &ImportOtp,
    ) -> Result<BulkImported, ApplicationError> {
        let key = self.imported_key(import, "import line")?;
        let actor = UserId::parse(BULK_IMPORT_ACTOR).map_err(|error| {
            tracing::error!(%error, "the bulk import's actor is no user id");
            ApplicationError::Internal
        })?;
        let context = ChangeContext {
            at: self.now(),
            actor,
            resource_owner: org.clone(),
        };
        let at = context.at;
        let sealed = self.seal_imported(user, &key, at)?;
        let (params, ready, pending_ttl) = (key.params(), import.ready, self.settings.pending_ttl);
        let cipher = Arc::clone(&self.cipher);
        let owner = user.clone();
        let same = Arc::new(AtomicBool::new(false));
        let seen = Arc::clone(&same);
        let decide = Box::new(move |current: Current<'_>| {
            let live = OtpFactor::live(current.factor, at, pending_ttl);
            if let Ok(existing) = OtpFactor::ready_for_check(live) {
                let holds_it = existing.params() == params
                    && cipher
                        .open(&SealBinding::of(&owner, existing), existing.secret())
                        .is_ok_and(|stored| stored.same_as(key.secret()));
                seen.store(holds_it, Ordering::SeqCst);
            }
            let factor = OtpFactor::import(live, sealed.clone(), params, ready, at)?;
            Ok(Change::accepted(
                FactorWrite::Put(factor),
                EventKind::OtpImported,
            ))
        });
        let target = Target {
            user: user.clone(),
            owner: org,
            account: user.as_str().to_owned(),
        };
        match self.commit(Operation::Import, user, context, decide).await {
            Ok(event) => Ok(BulkImported::Imported(ObjectDetails::of_change(
                event, &target,
            ))),
            Err(ApplicationError::Factor(FactorError::AlreadySetUp))
                if same.load(Ordering::SeqCst) =>
            {
                Ok(BulkImported::AlreadyImported)
            }
            Err(error) => Err(error),
        }
    }

    /// The checked secret and parameters of `import`; the skew is the
    /// service's (`totp.skew`), as exports do not carry one.
    fn imported_key(&self, import: &ImportOtp, request: &str) -> Result<TotpKey, ApplicationError> {
        let invalid = |field: &str, error: &dyn fmt::Display| {
            ApplicationError::InvalidRequest(Cow::Owned(format!(
                "invalid {request}.{field}: {error}"
            )))
        };
        let secret = TotpSecret::from_imported_base32(
            import.secret.expose_secret(),
            self.settings.import_allow_legacy_80_bit,
        )
        .map_err(|error| invalid("Secret", &error))?;
        let algorithm = if import.algorithm.is_empty() {
            TotpAlgorithm::Sha1
        } else {
            TotpAlgorithm::parse(&import.algorithm).map_err(|error| invalid("Algorithm", &error))?
        };
        let digits = match import.digits {
            0 => 6,
            digits => u8::try_from(digits).map_err(|_| {
                invalid(
                    "Digits",
                    &format_args!("TOTP digits must be 6 or 8, not {digits}"),
                )
            })?,
        };
        let period = match import.period {
            0 => 30,
            period => period,
        };
        let params = TotpParams::new(algorithm, digits, period, self.settings.params.skew())
            .map_err(|error| {
                let field = match error {
                    TotpParamsError::Digits(_) => "Digits",
                    TotpParamsError::Period(_) => "Period",
                    _ => "Params",
                };
                invalid(field, &error)
            })?;
        Ok(TotpKey::new(secret, params))
    }

    fn seal_imported(
        &self,
        user: &UserId,
        key: &TotpKey,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<domain::SealedSecret, ApplicationError> {
        self.cipher
            .seal(
                &SealBinding {
                    owner: user,
                    params: key.params(),
                    created_at: at,
                },
                key.secret(),
            )
            .map_err(|error| {
                tracing::error!(%error, "sealing an imported secret failed");
                ApplicationError::Internal
            })
    }
}
