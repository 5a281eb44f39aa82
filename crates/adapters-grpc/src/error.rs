//! Errors on the wire: the contract's gRPC code, the message `"<text> (<id>)"`
//! and one `zitadel.v1.ErrorDetail` in the status details, which tonic sends
//! as the `grpc-status-details-bin` trailer (an encoded `google.rpc.Status`).

use prost::Message;
use tonic::{Code, Status};

use application::ApplicationError;

use crate::proto::google::rpc;
use crate::proto::zitadel::v1::ErrorDetail;

/// The `google.protobuf.Any` type URL of a `zitadel.v1.ErrorDetail`.
pub const ERROR_DETAIL_TYPE_URL: &str = "type.googleapis.com/zitadel.v1.ErrorDetail";

/// The gRPC status of an application error: its code, `status_message()`, and
/// as details an encoded `google.rpc.Status` holding one
/// `zitadel.v1.ErrorDetail{id, text}` (none when the error has no id).
#[must_use]
pub fn status_of(error: &ApplicationError) -> Status {
    // A store failure's cause goes to the log here, once per answer.
    error.report();
    // The call's server span (see `ObserveLayer`) carries the contract's id.
    if let Some(id) = error.id() {
        tracing::Span::current().record("otp.error_id", id);
    }
    let code = Code::from(error.code().as_i32());
    let message = error.status_message();
    let details = error
        .id()
        .map(|id| prost_types::Any {
            type_url: ERROR_DETAIL_TYPE_URL.to_owned(),
            value: ErrorDetail {
                id: id.to_owned(),
                message: error.text(),
            }
            .encode_to_vec(),
        })
        .into_iter()
        .collect();
    let encoded = rpc::Status {
        code: code as i32,
        message: message.clone(),
        details,
    }
    .encode_to_vec();
    Status::with_details(code, message, encoded.into())
}

/// The `zitadel.v1.ErrorDetail` a status carries in its details, if any: the
/// client side of [`status_of`], for tests and clients.
#[must_use]
pub fn error_detail(status: &Status) -> Option<ErrorDetail> {
    let details = rpc::Status::decode(status.details()).ok()?;
    details
        .details
        .iter()
        .find(|any| any.type_url == ERROR_DETAIL_TYPE_URL)
        .and_then(|any| ErrorDetail::decode(any.value.as_slice()).ok())
}

#[cfg(test)]
mod tests {
    use application::StoreError;
    use domain::FactorError;

    use super::*;

    #[test]
    fn contract_errors_carry_code_message_and_detail() {
        let status = status_of(&ApplicationError::from(FactorError::AlreadySetUp));
        assert_eq!(status.code(), Code::AlreadyExists);
        assert_eq!(
            status.message(),
            "Multifactor OTP (OneTimePassword) is already set up (COMMAND-do9se)"
        );
        let decoded = rpc::Status::decode(status.details()).unwrap();
        assert_eq!(decoded.code, 6);
        assert_eq!(decoded.message, status.message());
        assert_eq!(decoded.details.len(), 1);
        assert_eq!(
            error_detail(&status),
            Some(ErrorDetail {
                id: "COMMAND-do9se".into(),
                message: "Multifactor OTP (OneTimePassword) is already set up".into(),
            })
        );
    }

    #[test]
    fn errors_without_id_have_no_detail_entry() {
        let status = status_of(&ApplicationError::AuthHeaderMissing);
        assert_eq!(status.code(), Code::Unauthenticated);
        assert_eq!(status.message(), "auth header missing");
        let decoded = rpc::Status::decode(status.details()).unwrap();
        assert_eq!((decoded.code, decoded.details.len()), (16, 0));
        assert_eq!(error_detail(&status), None);
    }

    /// The contract's behaviour and authentication tables (and the
    /// service's own rows, docs/security.md), written out: code and message
    /// as a client sees them on the wire.
    #[test]
    fn each_error_has_the_code_and_message_the_contract_gives_it() {
        let until = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let table: [(ApplicationError, Code, &str); 18] = [
            (
                FactorError::AlreadySetUp.into(),
                Code::AlreadyExists,
                "Multifactor OTP (OneTimePassword) is already set up (COMMAND-do9se)",
            ),
            (
                FactorError::NothingToVerify.into(),
                Code::NotFound,
                "Multifactor OTP (OneTimePassword) doesn't exist (COMMAND-3Mif9s)",
            ),
            (
                FactorError::AlreadyVerified.into(),
                Code::FailedPrecondition,
                "Multifactor OTP (OneTimePassword) is already set up (COMMAND-qx4ls)",
            ),
            (
                FactorError::InvalidCode.into(),
                Code::InvalidArgument,
                "Invalid code (EVENT-8isk2)",
            ),
            (
                FactorError::NothingToRemove.into(),
                Code::NotFound,
                "Multifactor OTP (OneTimePassword) doesn't exist (COMMAND-Hd9sd)",
            ),
            (
                ApplicationError::AuthHeaderMissing,
                Code::Unauthenticated,
                "auth header missing",
            ),
            (
                ApplicationError::TokenInvalid,
                Code::Unauthenticated,
                "Errors.Token.Invalid (AUTH-7fs1e)",
            ),
            (
                ApplicationError::InvalidRequest("code: must be 1 to 200 characters".into()),
                Code::InvalidArgument,
                "code: must be 1 to 200 characters",
            ),
            (
                FactorError::Reused.into(),
                Code::InvalidArgument,
                "Code has already been used (TOTP-Auw0a)",
            ),
            (
                FactorError::Locked { until }.into(),
                Code::FailedPrecondition,
                "User is locked until 2027-01-15T08:00:00Z (COMMAND-SF3fg)",
            ),
            (
                FactorError::Disabled.into(),
                Code::FailedPrecondition,
                "Too many wrong codes: the OTP factor is disabled until it is removed (OTP-DISABLED)",
            ),
            (
                ApplicationError::PermissionDenied,
                Code::PermissionDenied,
                "No matching permissions found (AUTH-5mWD2)",
            ),
            (
                ApplicationError::RecentAuthRequired,
                Code::Unauthenticated,
                "Errors.Token.RecentAuthenticationRequired (OTP-RECENT-AUTH)",
            ),
            (
                ApplicationError::TooManyChanges,
                Code::ResourceExhausted,
                "Too many changes to the OTP factor; try again later (OTP-RATE-LIMITED)",
            ),
            (
                ApplicationError::Unavailable("Errors.Token.KeysUnavailable"),
                Code::Unavailable,
                "Errors.Token.KeysUnavailable (OTP-UNAVAILABLE)",
            ),
            (
                ApplicationError::Store(StoreError::Unavailable("connection refused".into())),
                Code::Unavailable,
                "Errors.Store.Unavailable (OTP-UNAVAILABLE)",
            ),
            (
                ApplicationError::Internal,
                Code::Internal,
                "Errors.Internal (OTP-INTERNAL)",
            ),
            (
                ApplicationError::Store(StoreError::Corrupt("bad row".into())),
                Code::Internal,
                "Errors.Internal (OTP-INTERNAL)",
            ),
        ];
        for (error, code, message) in table {
            let status = status_of(&error);
            assert_eq!((status.code(), status.message()), (code, message));
            let decoded = rpc::Status::decode(status.details()).unwrap();
            assert_eq!(decoded.code, code as i32, "{message}");
        }
    }
}
