//! Errors on the wire: google.rpc.Status in proto3 JSON, with the HTTP status
//! that grpc-gateway gives each gRPC code (docs/api.md, section 5).

use std::fmt;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use application::{ApplicationError, StatusCode as Code};

/// The HTTP status of a gRPC code the service answers, per the contract's
/// table (as grpc-gateway maps them).
#[must_use]
pub const fn http_status_of(code: Code) -> StatusCode {
    match code {
        Code::InvalidArgument | Code::FailedPrecondition => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
    }
}

/// An error answer: gRPC code, message, the optional `zitadel.v1.ErrorDetail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    code: Code,
    message: String,
    detail: Option<(&'static str, String)>,
    http: StatusCode,
    challenge: Option<&'static str>,
    /// A store failure, whose cause is logged once, when the answer is
    /// rendered (`ApplicationError::report`).
    unreported: Option<ApplicationError>,
}

impl ApiError {
    /// A transport-level refusal with no contract id (bad body, unknown
    /// route), with an HTTP status of its own where grpc-gateway has one.
    pub(crate) fn plain(code: Code, message: impl Into<String>, http: StatusCode) -> Self {
        Self {
            code,
            message: message.into(),
            detail: None,
            http,
            challenge: None,
            unreported: None,
        }
    }

    /// A request body that is not valid for the message: 400, code 3.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::plain(Code::InvalidArgument, message, StatusCode::BAD_REQUEST)
    }

    /// A request body that did not arrive within the body timeout: 408,
    /// code 4 (DEADLINE_EXCEEDED); the connection is closed after it.
    pub(crate) fn body_timeout() -> Self {
        Self::plain(
            Code::DeadlineExceeded,
            "request body not received in time",
            StatusCode::REQUEST_TIMEOUT,
        )
    }
}

impl From<ApplicationError> for ApiError {
    fn from(error: ApplicationError) -> Self {
        let code = error.code();
        let challenge = match error {
            ApplicationError::AuthHeaderMissing => Some(r#"Bearer realm="otp-service""#),
            ApplicationError::TokenInvalid => {
                Some(r#"Bearer realm="otp-service", error="invalid_token""#)
            }
            // RFC 9470: sign in again (recently, with a stronger method).
            ApplicationError::RecentAuthRequired => {
                Some(r#"Bearer realm="otp-service", error="insufficient_user_authentication""#)
            }
            _ => None,
        };
        Self {
            code,
            message: error.status_message(),
            detail: error.id().map(|id| (id, error.text())),
            http: http_status_of(code),
            challenge,
            unreported: matches!(error, ApplicationError::Store(_)).then_some(error),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {})", self.message, self.code.as_i32())
    }
}

/// `google.rpc.Status`, the body of every non-2xx answer.
#[derive(Serialize, ToSchema)]
#[schema(as = google::rpc::Status)]
pub(crate) struct StatusBody<'a> {
    /// The gRPC code (3 INVALID_ARGUMENT, 16 UNAUTHENTICATED, ...).
    #[schema(example = 5)]
    code: i32,
    #[schema(example = "Errors.User.MFA.OTP.NotExisting (AUTH-ku33S)")]
    message: &'a str,
    /// At most one `zitadel.v1.ErrorDetail`, when the error has a contract id.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    details: Vec<ErrorDetail<'a>>,
}

/// `zitadel.v1.ErrorDetail` as a `google.protobuf.Any` in proto3 JSON.
#[derive(Serialize, ToSchema)]
#[schema(as = zitadel::v1::ErrorDetail)]
struct ErrorDetail<'a> {
    #[serde(rename = "@type")]
    #[schema(pattern = "^type\\.googleapis\\.com/zitadel\\.v1\\.ErrorDetail$")]
    type_url: &'static str,
    /// The contract's error id.
    #[schema(example = "AUTH-ku33S")]
    id: &'a str,
    message: &'a str,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.http
    }

    fn error_response(&self) -> HttpResponse {
        if let Some(error) = &self.unreported {
            error.report();
        }
        // The request's server span (see `observe`) carries the contract's id.
        if let Some((id, _)) = &self.detail {
            tracing::Span::current().record("otp.error_id", *id);
        }
        let details = self
            .detail
            .iter()
            .map(|(id, message)| ErrorDetail {
                type_url: "type.googleapis.com/zitadel.v1.ErrorDetail",
                id,
                message,
            })
            .collect();
        let mut response = HttpResponse::build(self.http);
        if self.http == StatusCode::REQUEST_TIMEOUT {
            // The unread rest of the body must not be taken for a next request.
            response.force_close();
        }
        if let Some(challenge) = self.challenge {
            response.insert_header((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            ));
        }
        response.json(StatusBody {
            code: self.code.as_i32(),
            message: &self.message,
            details,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::{Arc, Mutex, PoisonError};

    use actix_web::body::MessageBody;
    use application::StoreError;

    /// Log lines in the text format, collected.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_store_failure_is_logged_once_when_rendered_and_its_cause_stays_out_of_the_body() {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let error = ApiError::from(ApplicationError::from(StoreError::Unavailable(
            "connection refused by 10.0.0.7".into(),
        )));
        let logged = || String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        assert_eq!(logged(), "", "converting logs nothing");
        let response = error.error_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = response.into_body().try_into_bytes().unwrap();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(
            body.contains("Errors.Store.Unavailable (OTP-UNAVAILABLE)"),
            "{body}"
        );
        assert!(!body.contains("10.0.0.7"), "{body}");
        let log = logged();
        assert_eq!(log.matches("factor store unavailable").count(), 1, "{log}");
        assert!(log.contains("connection refused by 10.0.0.7"), "{log}");

        // Errors of the caller's own are not logged by the renderer.
        let _ = ApiError::from(ApplicationError::PermissionDenied).error_response();
        assert_eq!(logged(), log);
    }

    #[test]
    fn every_code_the_service_answers_maps_to_the_contracts_status() {
        let table = [
            (Code::InvalidArgument, 400),
            (Code::FailedPrecondition, 400),
            (Code::NotFound, 404),
            (Code::AlreadyExists, 409),
            (Code::PermissionDenied, 403),
            (Code::Unauthenticated, 401),
            (Code::ResourceExhausted, 429),
            (Code::Internal, 500),
            (Code::Unavailable, 503),
            (Code::Unimplemented, 501),
            (Code::DeadlineExceeded, 504),
        ];
        for (code, status) in table {
            assert_eq!(http_status_of(code).as_u16(), status, "{code:?}");
        }
    }
}
