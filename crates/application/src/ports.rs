//! The ports: what the use cases need from the outside world. Each has a
//! production adapter and an in-memory or fake one; the same contract tests
//! run against both (see the `testing` module).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::SecretString;

use domain::{
    Attempts, EventKind, FactorEvent, OrgId, OtpFactor, RecoveryCode, RecoveryCodes, RecoveryHash,
    SealedSecret, SubmittedRecoveryCode, TotpParams, TotpSecret, UserId,
};

use crate::authenticate::Principal;
use crate::error::{ApplicationError, StoreError};

/// The current time. The only way time enters a use case.
pub trait Clock: Send + Sync {
    /// Now, in UTC.
    fn now(&self) -> DateTime<Utc>;
}

/// Fresh TOTP secrets from a cryptographically secure source.
pub trait SecretSource: Send + Sync {
    /// A new random secret of [`TotpSecret::GENERATED_LEN`] bytes.
    fn generate(&self) -> TotpSecret;
}

/// Why the cipher could not seal or open a secret. Never carries key or
/// secret material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CipherError {
    /// The sealed secret names a key id that is not configured.
    #[error("no configured key has id {0:?}")]
    UnknownKey(String),
    /// Authentication failed: wrong key, wrong owner, parameters or creation
    /// time, or tampered bytes.
    #[error("sealed secret failed authentication")]
    Tampered,
    /// Sealed by an earlier version, bound only to owner and key id, and the
    /// cipher is configured to refuse those until `keys rotate` re-binds them.
    #[error(
        "sealed secret is in the unbound format of earlier versions: run `otp-service keys rotate` (with crypto.accept_unbound = true until it finishes)"
    )]
    Unbound,
}

/// What a sealed secret is bound to, as associated data: its owner and the
/// factor it belongs to (parameters and creation time). A sealed secret put
/// back into another user's row, into an older factor of the same user, or
/// beside downgraded digits, period or skew, fails to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealBinding<'a> {
    /// Whose factor it is.
    pub owner: &'a UserId,
    /// Algorithm, digits, period and skew of the factor.
    pub params: TotpParams,
    /// When the factor was added (bound to the microsecond, as stored).
    pub created_at: DateTime<Utc>,
}

impl<'a> SealBinding<'a> {
    /// The binding of `factor` of `owner`.
    #[must_use]
    pub const fn of(owner: &'a UserId, factor: &OtpFactor) -> Self {
        Self {
            owner,
            params: factor.params(),
            created_at: factor.created_at(),
        }
    }
}

/// A secret opened by [`SecretCipher::open_for_rotation`].
#[derive(Debug)]
pub struct OpenedSecret {
    /// The secret.
    pub secret: TotpSecret,
    /// Whether it is already sealed as [`SecretCipher::seal`] would seal it
    /// now (active key, bound format): then there is nothing to re-seal.
    pub current: bool,
}

/// Seals secrets at rest and opens them to check a code.
pub trait SecretCipher: Send + Sync {
    /// Seals `secret` under the active key, bound to `binding` as associated
    /// data: it opens only for the same owner, parameters and creation time.
    ///
    /// # Errors
    /// [`CipherError`] only if the primitive fails, which it should not.
    fn seal(
        &self,
        binding: &SealBinding<'_>,
        secret: &TotpSecret,
    ) -> Result<SealedSecret, CipherError>;

    /// Opens a sealed secret with the key it names, checking `binding`.
    ///
    /// # Errors
    /// [`CipherError::UnknownKey`] when that key is not configured,
    /// [`CipherError::Tampered`] when authentication fails,
    /// [`CipherError::Unbound`] for a secret of the earlier unbound format
    /// when those are refused.
    fn open(
        &self,
        binding: &SealBinding<'_>,
        sealed: &SealedSecret,
    ) -> Result<TotpSecret, CipherError>;

    /// Opens a secret for key rotation: also one of the earlier unbound
    /// format (whatever the configuration says), so that the rotation can
    /// re-seal it bound.
    ///
    /// # Errors
    /// As [`SecretCipher::open`], never [`CipherError::Unbound`].
    fn open_for_rotation(
        &self,
        binding: &SealBinding<'_>,
        sealed: &SealedSecret,
    ) -> Result<OpenedSecret, CipherError>;

    /// The id of the key [`SecretCipher::seal`] uses.
    fn active_key_id(&self) -> &str;
}

/// Issues recovery codes and keeps only their keyed hashes: HMAC-SHA256
/// under a key of the keyring, bound to the owner, compared in constant time.
pub trait RecoveryCodeHasher: Send + Sync {
    /// A fresh code from a cryptographically secure source.
    fn generate(&self) -> RecoveryCode;

    /// The id of the key [`RecoveryCodeHasher::hash`] uses for new sets.
    fn recovery_key_id(&self) -> &str;

    /// The hash of `code` for `owner` under the key `key_id`.
    ///
    /// # Errors
    /// [`CipherError::UnknownKey`] when that key is not configured.
    fn hash(
        &self,
        key_id: &str,
        owner: &UserId,
        code: &RecoveryCode,
    ) -> Result<RecoveryHash, CipherError>;

    /// Which of `codes` (of `owner`) `submitted` is, comparing against every
    /// hash in constant time; `None` when it is none of them.
    ///
    /// # Errors
    /// [`CipherError::UnknownKey`] when the set's key is not configured.
    fn position(
        &self,
        owner: &UserId,
        codes: &RecoveryCodes,
        submitted: &SubmittedRecoveryCode,
    ) -> Result<Option<usize>, CipherError>;
}

/// Why a bearer token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Signature, algorithm, issuer, audience, time or claims are wrong. The
    /// reason is for the log; the client only learns "invalid".
    #[error("token rejected: {0}")]
    Invalid(String),
    /// The issuer's keys could not be fetched; the token may be fine.
    #[error("token keys unavailable: {0}")]
    Unavailable(String),
}

/// Turns a bearer token into the signed-in user.
#[async_trait]
pub trait TokenVerifier: Send + Sync {
    /// Validates the token and reads the identity claims from it.
    ///
    /// # Errors
    /// [`TokenError::Invalid`] for any token that must not be trusted,
    /// [`TokenError::Unavailable`] when validation could not be attempted.
    async fn verify(&self, token: &SecretString) -> Result<Principal, TokenError>;
}

/// Who changes what, and when: stored with the appended event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeContext {
    /// The time of the change; the event's time.
    pub at: DateTime<Utc>,
    /// The subject that acted (for "me" calls, the user).
    pub actor: UserId,
    /// The user's organisation, when the token names it.
    pub resource_owner: Option<OrgId>,
}

/// What a decision does to the stored factor.
#[derive(Debug)]
pub enum FactorWrite {
    /// Leave it as it is.
    Keep,
    /// Store this factor (insert or replace).
    Put(OtpFactor),
    /// Delete the factor.
    Delete,
}

/// What a decision sees: the user's stored factor (expired pending ones
/// included: the decision applies the time to live) and wrong-code count,
/// as one consistent read of the user's state.
#[derive(Debug, Clone, Copy)]
pub struct Current<'a> {
    /// The stored factor, if any.
    pub factor: Option<&'a OtpFactor>,
    /// Wrong codes since the last right one (kept per user, across factors).
    pub attempts: Attempts,
    /// The user's unused recovery codes, if any.
    pub recovery: Option<&'a RecoveryCodes>,
}

/// What a decision does to the user's recovery codes.
#[derive(Debug)]
pub enum RecoveryWrite {
    /// Leave them as they are.
    Keep,
    /// Store this set (replacing any).
    Put(RecoveryCodes),
    /// Delete them.
    Delete,
}

/// What a decision writes. Even a refused call may write: a wrong code
/// raises the count and appends `otp.check.failed` / `otp.locked`.
#[derive(Debug)]
pub struct Change {
    /// The factor's new value.
    pub factor: FactorWrite,
    /// The new wrong-code count, or `None` to keep it.
    pub attempts: Option<Attempts>,
    /// The recovery codes' new value.
    pub recovery: RecoveryWrite,
    /// Events appended in this order, each with the next sequence number.
    pub events: Vec<EventKind>,
    /// When set, the call fails with this error after the change commits.
    pub refusal: Option<ApplicationError>,
}

impl Change {
    /// A successful change that writes `factor` and appends one event.
    #[must_use]
    pub fn accepted(factor: FactorWrite, event: EventKind) -> Self {
        Self {
            factor,
            attempts: None,
            recovery: RecoveryWrite::Keep,
            events: vec![event],
            refusal: None,
        }
    }
}

/// What [`FactorStore::change`] committed.
#[derive(Debug)]
pub struct Committed {
    /// The appended events, in order, with their sequence numbers.
    pub events: Vec<FactorEvent>,
    /// The decision's refusal: committed, but the call fails with it.
    pub refusal: Option<ApplicationError>,
}

/// A use case's decision, run by the store on the user's state as last
/// committed. It must be quick, pure and re-runnable: a store that lost a
/// race to another change of the same user runs it again on the fresh state,
/// and a store may first ask it about the empty state (a user who never
/// changed anything) to try a new user's first write in one step (no I/O,
/// no waiting; it may open a sealed secret, and a store never holds a row
/// lock while it runs).
pub type Decide =
    Box<dyn for<'a> Fn(Current<'a>) -> Result<Change, ApplicationError> + Send + Sync>;

/// Durable factors and their per-user event stream.
#[async_trait]
pub trait FactorStore: Send + Sync {
    /// The user's factor, if any, as last committed.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot answer.
    async fn find(&self, user: &UserId) -> Result<Option<OtpFactor>, StoreError>;

    /// The user's unused recovery codes, if any, as last committed.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot answer.
    async fn recovery_codes(&self, user: &UserId) -> Result<Option<RecoveryCodes>, StoreError>;

    /// The user's organisation as last recorded: the resource owner of the
    /// user's newest event that names one (`None` for a user never seen, or
    /// whose events never named one). It outlives the factor, as the events do.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot answer.
    async fn resource_owner(&self, user: &UserId) -> Result<Option<OrgId>, StoreError>;

    /// Runs `decide` on the user's current state and writes the [`Change`]
    /// it returns: the factor, the wrong-code count, and the events with the
    /// next sequence numbers (1, 2, 3, ... per user, no gaps), in one atomic
    /// step.
    ///
    /// Concurrent calls for the same user, from any number of processes, are
    /// serialised: a change commits only if no other change of the user
    /// committed after the state its `decide` saw (else `decide` runs again
    /// on the new state), so each committed decision saw every change
    /// committed before it. When `decide` returns an error, nothing is
    /// written and no sequence number is used.
    ///
    /// # Errors
    /// The error `decide` returned, or [`ApplicationError::Unavailable`] /
    /// [`ApplicationError::Internal`] from a store failure; in both cases
    /// nothing was written.
    async fn change(
        &self,
        user: &UserId,
        context: ChangeContext,
        decide: Decide,
    ) -> Result<Committed, ApplicationError>;

    /// Deletes pending factors added before `added_before` (they count as
    /// absent already) and answers how many went. No event is appended:
    /// nothing the user could see changes.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot do it.
    async fn purge_pending(&self, added_before: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// A stored secret that a key rotation may re-seal, with what it is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSecret {
    /// Whose factor it is.
    pub user: UserId,
    /// The secret as stored.
    pub sealed: SealedSecret,
    /// The factor's parameters, as stored.
    pub params: TotpParams,
    /// When the factor was added, as stored.
    pub created_at: DateTime<Utc>,
}

impl StoredSecret {
    /// What the secret is bound to.
    #[must_use]
    pub const fn binding(&self) -> SealBinding<'_> {
        SealBinding {
            owner: &self.user,
            params: self.params,
            created_at: self.created_at,
        }
    }
}

/// A re-sealed secret to write in place of the one read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reseal {
    /// Whose factor it is.
    pub user: UserId,
    /// The secret as read; the write happens only if it is still stored.
    pub old: SealedSecret,
    /// The same secret sealed under the active key.
    pub new: SealedSecret,
}

/// Sealed secrets in bulk, for key rotation.
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// Up to `limit` factors' secrets, in user id order after `after`. Every
    /// factor, whatever its key: only the cipher can tell whether a secret is
    /// sealed the current way (key and format).
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot answer.
    async fn stored_secrets(
        &self,
        after: Option<&UserId>,
        limit: usize,
    ) -> Result<Vec<StoredSecret>, StoreError>;

    /// Writes each re-sealed secret whose factor still holds the old one
    /// (one user at a time, each serialised with [`FactorStore::change`] of
    /// that user: a change decided on the old secret no longer commits);
    /// answers how many were written (the rest changed meanwhile).
    ///
    /// # Errors
    /// [`StoreError`]; some of the batch may have been written (each
    /// write is whole), and running the rotation again goes on.
    async fn reseal(&self, batch: Vec<Reseal>) -> Result<u64, StoreError>;
}

/// Whether the service can do its work right now (for `/readyz`).
#[async_trait]
pub trait Readiness: Send + Sync {
    /// Checks the dependencies the service needs to answer requests.
    ///
    /// # Errors
    /// [`NotReady`]: why not, safe to show to anyone (`/readyz` shows it).
    async fn ready(&self) -> Result<(), NotReady>;
}

/// Why the service cannot do its work right now. The text is what `/readyz`
/// answers; causes (which host, which error) go only to the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    /// The database cannot be reached, or did not answer in time.
    #[error("database unreachable")]
    Unreachable,
    /// The database is reachable but its schema is behind this version.
    #[error("schema not current: run `otp-service migrate`")]
    SchemaBehind,
    /// The process is draining before it stops.
    #[error("shutting down")]
    ShuttingDown,
}
