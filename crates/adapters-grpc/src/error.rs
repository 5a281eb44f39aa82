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

    #[test]
    fn every_application_code_keeps_its_number() {
        let errors = [
            ApplicationError::InvalidRequest("bad".into()),
            ApplicationError::TokenInvalid,
            ApplicationError::Unavailable("Errors.Store.Unavailable"),
            ApplicationError::Internal,
            FactorError::InvalidCode.into(),
            FactorError::NothingToVerify.into(),
            FactorError::AlreadyVerified.into(),
        ];
        for error in errors {
            assert_eq!(status_of(&error).code() as i32, error.code().as_i32());
        }
    }
}
