//! The ports: what the use cases need from the outside world. Each has a
//! production adapter and an in-memory or fake one; the same contract tests
//! run against both (see the `testing` module).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::SecretString;

use domain::{EventKind, FactorEvent, OrgId, OtpFactor, SealedSecret, TotpSecret, UserId};

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
    /// Authentication failed: wrong key, wrong owner, or tampered bytes.
    #[error("sealed secret failed authentication")]
    Tampered,
}

/// Seals secrets at rest and opens them to check a code.
pub trait SecretCipher: Send + Sync {
    /// Seals `secret` for `owner` under the active key. The owner is bound as
    /// associated data: a sealed secret copied to another user never opens.
    ///
    /// # Errors
    /// [`CipherError`] only if the primitive fails, which it should not.
    fn seal(&self, owner: &UserId, secret: &TotpSecret) -> Result<SealedSecret, CipherError>;

    /// Opens a sealed secret of `owner` with the key it names.
    ///
    /// # Errors
    /// [`CipherError::UnknownKey`] when that key is not configured,
    /// [`CipherError::Tampered`] when authentication fails.
    fn open(&self, owner: &UserId, sealed: &SealedSecret) -> Result<TotpSecret, CipherError>;
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

/// What a decision writes: the factor's new value (`None` removes it) and the
/// event appended with it.
#[derive(Debug)]
pub struct Change {
    /// The factor after the change, or `None` to delete it.
    pub factor: Option<OtpFactor>,
    /// The event recording the change.
    pub event: EventKind,
}

/// A use case's decision, run by the store on the factor as it is inside the
/// transaction, with the user's stream locked. It must be quick and pure: no
/// I/O, no waiting.
pub type Decide = Box<dyn FnOnce(Option<&OtpFactor>) -> Result<Change, ApplicationError> + Send>;

/// Durable factors and their per-user event stream.
#[async_trait]
pub trait FactorStore: Send + Sync {
    /// The user's factor, if any, as last committed.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot answer.
    async fn find(&self, user: &UserId) -> Result<Option<OtpFactor>, StoreError>;

    /// Runs `decide` on the user's current factor and, if it returns a
    /// [`Change`], writes the factor and appends the event with the next
    /// sequence number (1, 2, 3, ... per user, no gaps) in one atomic step.
    ///
    /// Concurrent calls for the same user, from any number of processes, are
    /// serialised: each `decide` sees the result of every change committed
    /// before it. When `decide` fails, nothing is written and no sequence
    /// number is used.
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
    ) -> Result<FactorEvent, ApplicationError>;
}

/// Whether the service can do its work right now (for `/readyz`).
#[async_trait]
pub trait Readiness: Send + Sync {
    /// Checks the dependencies the service needs to answer requests.
    ///
    /// # Errors
    /// A short reason, safe to show to an operator, when it is not ready.
    async fn ready(&self) -> Result<(), String>;
}
