//! The four calls of the contract and the trusted login check, one file
//! each, sharing the ports held by [`OtpFactors`]; and key rotation.

mod add_otp;
mod check_otp;
mod import_otp;
mod list_factors;
mod recovery;
mod remove_otp;
mod rotate_keys;
mod target;
mod verify_otp;

use std::sync::Arc;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};

use domain::{
    AttemptPolicy, Attempts, EventKind, FactorError, FactorEvent, Judgement, OrgId, OtpFactor,
    SubmittedCode, TimeStep, TotpKey, TotpParams, UserId, judge,
};

pub use add_otp::AddedOtp;
pub use import_otp::{BULK_IMPORT_ACTOR, BulkImported, ImportOtp};
pub use list_factors::{FactorList, ListedFactor};
pub use recovery::{GeneratedCodes, RecoverySettings, Redeemed};
pub use rotate_keys::{KeyRotation, RotationReport};
pub use target::Callers;

use crate::authenticate::Principal;
use crate::error::ApplicationError;
use crate::policy::{AdminPolicy, CallerAllowlist, RecentAuthPolicy};
use crate::ports::{
    Change, ChangeContext, Clock, Decide, FactorStore, FactorWrite, RecoveryCodeHasher,
    RecoveryWrite, SealBinding, SecretCipher, SecretSource,
};
use crate::rate_limit::ChangeLimiter;

/// Deployment settings: parameters of new factors and the security policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpSettings {
    /// The otpauth URL's issuer (the name apps show).
    pub issuer: String,
    /// Parameters of new factors; enrolled factors keep their own.
    pub params: TotpParams,
    /// How long an added factor may stay unverified before it counts as absent.
    pub pending_ttl: TimeDelta,
    /// Wrong codes in a row that lock, and for how long.
    pub attempts: AttemptPolicy,
    /// The scope a trusted caller's token needs for the login check.
    pub check_scope: String,
    /// The clients trusted with the login check (besides the scope).
    pub check_clients: CallerAllowlist,
    /// The sign-in Add (over an existing factor) and Remove require.
    pub recent_auth: RecentAuthPolicy,
    /// Add and Remove calls per user per sliding hour (`0`: no limit).
    pub max_changes_per_hour: u32,
    /// Who administers other users' factors.
    pub admins: AdminPolicy,
    /// Whether imported secrets of 80 to 127 bits are accepted
    /// (`import.allow_legacy_80_bit`); else imports need 128 bits.
    pub import_allow_legacy_80_bit: bool,
}

impl Default for TotpSettings {
    /// Issuer `otp-service`, SHA1/6/30s/skew 1, pending factors expire after
    /// 10 minutes, 5 wrong codes lock for 5 minutes, scope `otp.check`, no
    /// client trusted with the check, no recent sign-in required, 20 changes
    /// per user per hour, the default [`AdminPolicy`], imports of at least
    /// 128 bits.
    fn default() -> Self {
        Self {
            issuer: "otp-service".to_owned(),
            params: TotpParams::default(),
            pending_ttl: TimeDelta::minutes(10),
            attempts: AttemptPolicy::DEFAULT,
            check_scope: "otp.check".to_owned(),
            check_clients: CallerAllowlist::default(),
            recent_auth: RecentAuthPolicy::default(),
            max_changes_per_hour: 20,
            admins: AdminPolicy::default(),
            import_allow_legacy_80_bit: false,
        }
    }
}

/// Which call an outcome counter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Enroll,
    Verify,
    Check,
    Remove,
    Import,
    RecoveryGenerate,
    RecoveryRedeem,
    RecoveryRemove,
}

impl Operation {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Enroll => "enroll",
            Self::Verify => "verify",
            Self::Check => "check",
            Self::Remove => "remove",
            Self::Import => "import",
            Self::RecoveryGenerate => "recovery_generate",
            Self::RecoveryRedeem => "recovery_redeem",
            Self::RecoveryRemove => "recovery_remove",
        }
    }
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
    fn of_change(event: FactorEvent, target: &target::Target) -> Self {
        Self {
            sequence: event.sequence,
            creation_date: None,
            change_date: event.at,
            resource_owner: target.owner.clone(),
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
    changes: Arc<ChangeLimiter>,
    recovery: Option<(Arc<dyn RecoveryCodeHasher>, recovery::RecoverySettings)>,
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
            changes: Arc::new(ChangeLimiter::new(settings.max_changes_per_hour)),
            settings,
            recovery: None,
        }
    }

    /// Now, at the microsecond precision every store keeps, so the time
    /// answered equals the time stored.
    fn now(&self) -> DateTime<Utc> {
        self.clock.now().trunc_subsecs(6)
    }

    /// Runs `decide` in the store for `user`'s factor, writes the audit line
    /// of every appended event, counts the outcome, and answers the last
    /// event (or the decision's refusal, after its writes committed).
    async fn commit(
        &self,
        operation: Operation,
        user: &UserId,
        context: ChangeContext,
        decide: Decide,
    ) -> Result<FactorEvent, ApplicationError> {
        let actor = context.actor.clone();
        let committed = match self.store.change(user, context, decide).await {
            Ok(committed) => committed,
            Err(error) => {
                count(operation, Some(&error));
                return Err(error);
            }
        };
        for event in &committed.events {
            audit(user, &actor, event);
            if event.kind == EventKind::Locked {
                tracing::info!(
                    target: "otp.metrics",
                    operation = operation.as_str(),
                    monotonic_counter.otp.lockouts = 1_u64
                );
            }
            if matches!(
                event.kind,
                EventKind::CheckFailed
                    | EventKind::CheckRefusedLocked
                    | EventKind::RecoveryCodeFailed
            ) {
                // Per trusted caller, so one caller hammering users shows.
                tracing::info!(
                    target: "otp.metrics",
                    caller = %actor,
                    event = event.kind.as_str(),
                    monotonic_counter.otp.check_failures = 1_u64
                );
                tracing::warn!(
                    caller = %actor,
                    user_id = %user,
                    event = event.kind.as_str(),
                    "login check refused"
                );
            }
        }
        count(operation, committed.refusal.as_ref());
        if let Some(refusal) = committed.refusal {
            return Err(refusal);
        }
        committed.events.last().copied().ok_or_else(|| {
            tracing::error!("a change committed without an event");
            ApplicationError::Internal
        })
    }

    fn context(&self, actor: &Principal, resource_owner: Option<OrgId>) -> ChangeContext {
        ChangeContext {
            at: self.now(),
            actor: actor.user_id.clone(),
            resource_owner,
        }
    }
}

/// One structured audit line per appended event (never a secret or a code).
fn audit(user: &UserId, actor: &UserId, event: &FactorEvent) {
    tracing::info!(
        target: "audit",
        event = event.kind.as_str(),
        user_id = %user,
        actor = %actor,
        sequence = event.sequence,
        at = %event.at.to_rfc3339(),
        "factor event appended"
    );
}

/// The metric label of a call's outcome.
fn outcome(error: Option<&ApplicationError>) -> &'static str {
    match error {
        None => "ok",
        Some(ApplicationError::Factor(error)) => match error {
            FactorError::InvalidCode => "invalid_code",
            FactorError::Reused => "reused",
            FactorError::Locked { .. } => "locked",
            FactorError::Disabled => "disabled",
            FactorError::NothingToVerify | FactorError::NothingToRemove => "not_found",
            FactorError::AlreadySetUp | FactorError::AlreadyVerified => "already_exists",
        },
        Some(ApplicationError::InvalidRequest(_)) => "invalid_request",
        Some(ApplicationError::TooManyChanges) => "rate_limited",
        Some(ApplicationError::NoRecoveryCodes | ApplicationError::RecoveryNeedsFactor) => {
            "not_found"
        }
        Some(_) => "error",
    }
}

/// Counts a call by outcome, as an event the OpenTelemetry metrics layer
/// turns into a counter (`otp.enrollments`, `otp.verifications`, ...).
fn count(operation: Operation, error: Option<&ApplicationError>) {
    let outcome = outcome(error);
    match operation {
        Operation::Enroll => {
            tracing::info!(target: "otp.metrics", outcome, monotonic_counter.otp.enrollments = 1_u64);
        }
        Operation::Verify => {
            tracing::info!(target: "otp.metrics", outcome, monotonic_counter.otp.verifications = 1_u64);
        }
        Operation::Check => {
            tracing::info!(target: "otp.metrics", outcome, monotonic_counter.otp.checks = 1_u64);
        }
        Operation::Remove => {
            tracing::info!(target: "otp.metrics", outcome, monotonic_counter.otp.removals = 1_u64);
        }
        Operation::Import => {
            tracing::info!(target: "otp.metrics", outcome, monotonic_counter.otp.imports = 1_u64);
        }
        Operation::RecoveryGenerate | Operation::RecoveryRedeem | Operation::RecoveryRemove => {
            tracing::info!(
                target: "otp.metrics",
                outcome,
                operation = operation.as_str(),
                monotonic_counter.otp.recovery_codes = 1_u64
            );
        }
    }
}

/// Unix seconds of a time; times before 1970 count as 0 (TOTP has no steps there).
fn unix_seconds(at: DateTime<Utc>) -> u64 {
    u64::try_from(at.timestamp()).unwrap_or(0)
}

/// What trying a code against a factor came to.
enum CodeAttempt {
    /// Right and fresh: the step to record and the count to store (`None`:
    /// already zero).
    Accepted {
        step: TimeStep,
        attempts: Option<Attempts>,
    },
    /// Wrong or replayed: the change to commit before refusing.
    Refused(Box<Change>),
}

/// Tries `code` against `factor` for `owner` under the attempt limits:
/// locked or disabled users are refused without the code being looked at
/// (appending `refused_event`, if any, without touching the count); a wrong
/// or replayed code raises the count, appends `failed_event` (if any) and,
/// when the count reaches the limit, `otp.locked`.
#[allow(clippy::too_many_arguments)]
fn attempt_code(
    cipher: &dyn SecretCipher,
    owner: &UserId,
    factor: &OtpFactor,
    code: &SubmittedCode,
    attempts: Attempts,
    policy: &AttemptPolicy,
    at: DateTime<Utc>,
    failed_event: Option<EventKind>,
    refused_event: Option<EventKind>,
) -> Result<CodeAttempt, ApplicationError> {
    let unchecked = |error: FactorError| match refused_event {
        Some(kind) => Ok(CodeAttempt::Refused(Box::new(Change {
            factor: FactorWrite::Keep,
            attempts: None,
            recovery: RecoveryWrite::Keep,
            events: vec![kind],
            refusal: Some(error.into()),
        }))),
        None => Err(error.into()),
    };
    if attempts.disabled(policy) {
        return unchecked(FactorError::Disabled);
    }
    if let Some(until) = attempts.locked_until(policy, at) {
        return unchecked(FactorError::Locked { until });
    }
    let secret = cipher
        .open(&SealBinding::of(owner, factor), factor.secret())
        .map_err(|error| add_otp::cipher_failure(&error))?;
    let key = TotpKey::new(secret, factor.params());
    match judge(&attempts, policy, at, || {
        key.check(code, unix_seconds(at), factor.last_used_step())
    }) {
        Judgement::Accepted(step) => Ok(CodeAttempt::Accepted {
            step,
            attempts: (attempts != Attempts::default()).then(Attempts::default),
        }),
        Judgement::Locked { until } => unchecked(FactorError::Locked { until }),
        Judgement::Disabled => unchecked(FactorError::Disabled),
        Judgement::Refused {
            error,
            attempts,
            locked_now,
        } => {
            let events = failed_event
                .into_iter()
                .chain(locked_now.then_some(EventKind::Locked))
                .collect();
            Ok(CodeAttempt::Refused(Box::new(Change {
                factor: FactorWrite::Keep,
                attempts: Some(attempts),
                recovery: RecoveryWrite::Keep,
                events,
                refusal: Some(error.into()),
            })))
        }
    }
}

/// The refusal of a call that found only an expired pending factor: it is
/// deleted on the way (it counts as absent already).
fn refuse_expired(
    stored: Option<&OtpFactor>,
    live: Option<&OtpFactor>,
    error: FactorError,
) -> Result<Change, ApplicationError> {
    if stored.is_some() && live.is_none() {
        return Ok(Change {
            factor: FactorWrite::Delete,
            attempts: None,
            recovery: RecoveryWrite::Keep,
            events: Vec::new(),
            refusal: Some(error.into()),
        });
    }
    Err(error.into())
}
