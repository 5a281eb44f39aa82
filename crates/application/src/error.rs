//! The application's one error vocabulary: each error knows its gRPC status
//! code, its contract error id (where the contract gives one) and its text.
//! Adapters only render it.

use std::borrow::Cow;

use domain::FactorError;

/// The gRPC status codes this service answers with (google.rpc.Code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusCode {
    /// 3
    InvalidArgument = 3,
    /// 4: a request body that did not arrive in time (transport only).
    DeadlineExceeded = 4,
    /// 5
    NotFound = 5,
    /// 6
    AlreadyExists = 6,
    /// 7
    PermissionDenied = 7,
    /// 8
    ResourceExhausted = 8,
    /// 9
    FailedPrecondition = 9,
    /// 12: a known path with another method (transport only).
    Unimplemented = 12,
    /// 13
    Internal = 13,
    /// 14
    Unavailable = 14,
    /// 16
    Unauthenticated = 16,
}

impl StatusCode {
    /// The numeric code.
    #[must_use]
    pub const fn as_i32(self) -> i32 {
        self as i32
    }
}

/// Why a store could not do its job. The cause is for the operator's log,
/// never for the client; it must never carry a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or timed out; worth retrying.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store answered something that breaks its own invariants.
    #[error("store corrupt: {0}")]
    Corrupt(String),
}

/// Everything a use case can answer instead of success.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplicationError {
    /// A rule of the factor's state machine (the contract's behaviour table).
    #[error(transparent)]
    Factor(#[from] FactorError),
    /// The request breaks a field rule; the text says which (no error id, as
    /// ZITADEL's request validation answers).
    #[error("{0}")]
    InvalidRequest(Cow<'static, str>),
    /// No `Authorization` header at all.
    #[error("auth header missing")]
    AuthHeaderMissing,
    /// A header that is not `Bearer <token>`, or a token that fails validation.
    #[error("Errors.Token.Invalid")]
    TokenInvalid,
    /// A valid token whose sign-in is too old, or lacks a required method
    /// (`amr`), for a call that replaces or removes the second factor: the
    /// user must sign in again (RFC 9470's `insufficient_user_authentication`).
    #[error("Errors.Token.RecentAuthenticationRequired")]
    RecentAuthRequired,
    /// A valid token without the permission the call needs.
    #[error("No matching permissions found")]
    PermissionDenied,
    /// The token issuer's keys could not be reached, or the store stayed
    /// contended past its retries.
    #[error("{0}")]
    Unavailable(&'static str),
    /// The factor store failed. The client sees only
    /// `Errors.Store.Unavailable` (14) or `Errors.Internal` (13); the cause,
    /// the operator's text, travels inside and is logged once, by
    /// [`ApplicationError::report`], where the answer is rendered.
    #[error("{}", store_text(.0))]
    Store(StoreError),
    /// The user changed their factor (Add, Remove) `totp.max_changes_per_hour`
    /// times in the last hour.
    #[error("Too many changes to the OTP factor; try again later")]
    TooManyChanges,
    /// Redeeming or removing recovery codes of a user who has none left.
    #[error("The user has no recovery codes")]
    NoRecoveryCodes,
    /// Generating recovery codes for a user without a READY OTP factor:
    /// codes back up a second factor, they are not one on their own.
    #[error("Recovery codes need a READY OTP factor")]
    RecoveryNeedsFactor,
    /// Something broke inside the service; the cause went to the log.
    #[error("Errors.Internal")]
    Internal,
}

impl ApplicationError {
    /// The error's row of the contract's table (docs/api.md, errors): its
    /// gRPC code and its error id. The one place both are given: adding an
    /// error is its text (the `#[error]` above, or the domain's) and this row.
    #[must_use]
    const fn row(&self) -> (StatusCode, Option<&'static str>) {
        use StatusCode as C;
        match self {
            Self::Factor(error) => match error {
                FactorError::AlreadySetUp => (C::AlreadyExists, Some("COMMAND-do9se")),
                FactorError::NothingToVerify => (C::NotFound, Some("COMMAND-3Mif9s")),
                FactorError::AlreadyVerified => (C::FailedPrecondition, Some("COMMAND-qx4ls")),
                FactorError::InvalidCode => (C::InvalidArgument, Some("EVENT-8isk2")),
                FactorError::NothingToRemove => (C::NotFound, Some("COMMAND-Hd9sd")),
                FactorError::Reused => (C::InvalidArgument, Some("TOTP-Auw0a")),
                FactorError::Locked { .. } => (C::FailedPrecondition, Some("COMMAND-SF3fg")),
                FactorError::Disabled => (C::FailedPrecondition, Some("OTP-DISABLED")),
            },
            Self::InvalidRequest(_) => (C::InvalidArgument, None),
            Self::AuthHeaderMissing => (C::Unauthenticated, None),
            Self::TokenInvalid => (C::Unauthenticated, Some("AUTH-7fs1e")),
            Self::RecentAuthRequired => (C::Unauthenticated, Some("OTP-RECENT-AUTH")),
            Self::PermissionDenied => (C::PermissionDenied, Some("AUTH-5mWD2")),
            Self::Unavailable(_) | Self::Store(StoreError::Unavailable(_)) => {
                (C::Unavailable, Some("OTP-UNAVAILABLE"))
            }
            Self::TooManyChanges => (C::ResourceExhausted, Some("OTP-RATE-LIMITED")),
            Self::NoRecoveryCodes => (C::NotFound, Some("OTP-RECOVERY-NONE")),
            Self::RecoveryNeedsFactor => (C::FailedPrecondition, Some("OTP-RECOVERY-NO-FACTOR")),
            Self::Internal | Self::Store(StoreError::Corrupt(_)) => {
                (C::Internal, Some("OTP-INTERNAL"))
            }
        }
    }

    /// The gRPC status code (the HTTP status follows from it).
    #[must_use]
    pub const fn code(&self) -> StatusCode {
        self.row().0
    }

    /// The contract's error id, carried in the `zitadel.v1.ErrorDetail`.
    #[must_use]
    pub const fn id(&self) -> Option<&'static str> {
        self.row().1
    }

    /// The text without the id.
    #[must_use]
    pub fn text(&self) -> String {
        self.to_string()
    }

    /// The status message as ZITADEL sends it: `"<text> (<id>)"`, or the bare
    /// text where there is no id.
    #[must_use]
    pub fn status_message(&self) -> String {
        match self.id() {
            Some(id) => format!("{self} ({id})"),
            None => self.to_string(),
        }
    }
}

impl From<StoreError> for ApplicationError {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

/// What the client reads for a store failure: never the cause.
const fn store_text(error: &StoreError) -> &'static str {
    match error {
        StoreError::Unavailable(_) => "Errors.Store.Unavailable",
        StoreError::Corrupt(_) => "Errors.Internal",
    }
}

impl ApplicationError {
    /// Logs what the operator must know about this answer: a store
    /// failure's cause, at error level. Called once per answer, by the
    /// adapter that renders it (HTTP, gRPC, the command line); every other
    /// error is the caller's own and is not logged here.
    pub fn report(&self) {
        match self {
            Self::Store(StoreError::Unavailable(cause)) => {
                tracing::error!(%cause, "factor store unavailable");
            }
            Self::Store(StoreError::Corrupt(cause)) => {
                tracing::error!(%cause, "factor store answered inconsistent data");
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_rows_have_their_ids_codes_and_messages() {
        let cases = [
            (
                FactorError::AlreadySetUp,
                6,
                "COMMAND-do9se",
                "Multifactor OTP (OneTimePassword) is already set up",
            ),
            (
                FactorError::NothingToVerify,
                5,
                "COMMAND-3Mif9s",
                "Multifactor OTP (OneTimePassword) doesn't exist",
            ),
            (
                FactorError::AlreadyVerified,
                9,
                "COMMAND-qx4ls",
                "Multifactor OTP (OneTimePassword) is already set up",
            ),
            (FactorError::InvalidCode, 3, "EVENT-8isk2", "Invalid code"),
            (
                FactorError::NothingToRemove,
                5,
                "COMMAND-Hd9sd",
                "Multifactor OTP (OneTimePassword) doesn't exist",
            ),
            (
                FactorError::Reused,
                3,
                "TOTP-Auw0a",
                "Code has already been used",
            ),
            (
                FactorError::Locked {
                    until: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
                },
                9,
                "COMMAND-SF3fg",
                "User is locked until 2027-01-15T08:00:00Z",
            ),
            (
                FactorError::Disabled,
                9,
                "OTP-DISABLED",
                "Too many wrong codes: the OTP factor is disabled until it is removed",
            ),
        ];
        for (factor, code, id, text) in cases {
            let error = ApplicationError::from(factor);
            assert_eq!(error.code().as_i32(), code);
            assert_eq!(error.id(), Some(id));
            assert_eq!(error.text(), text);
            assert_eq!(error.status_message(), format!("{text} ({id})"));
        }
    }

    #[test]
    fn auth_errors_follow_section_six() {
        assert_eq!(
            ApplicationError::AuthHeaderMissing.status_message(),
            "auth header missing"
        );
        assert_eq!(
            ApplicationError::AuthHeaderMissing.code(),
            StatusCode::Unauthenticated
        );
        assert_eq!(
            ApplicationError::TokenInvalid.status_message(),
            "Errors.Token.Invalid (AUTH-7fs1e)"
        );
    }

    #[test]
    fn an_old_sign_in_is_unauthenticated_with_its_own_id() {
        let error = ApplicationError::RecentAuthRequired;
        assert_eq!(error.code(), StatusCode::Unauthenticated);
        assert_eq!(
            error.status_message(),
            "Errors.Token.RecentAuthenticationRequired (OTP-RECENT-AUTH)"
        );
    }

    #[test]
    fn a_token_without_the_permission_is_denied() {
        assert_eq!(
            ApplicationError::PermissionDenied.code(),
            StatusCode::PermissionDenied
        );
        assert_eq!(
            ApplicationError::PermissionDenied.status_message(),
            "No matching permissions found (AUTH-5mWD2)"
        );
    }

    #[test]
    fn store_failures_hide_their_cause() {
        let error = ApplicationError::from(StoreError::Unavailable("password=hunter2".into()));
        assert_eq!(error.code(), StatusCode::Unavailable);
        assert!(!error.status_message().contains("hunter2"));
        let error = ApplicationError::from(StoreError::Corrupt("bad row".into()));
        assert_eq!(error.code(), StatusCode::Internal);
        assert!(!error.status_message().contains("bad row"));
    }
}
