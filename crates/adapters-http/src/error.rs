//! Errors on the wire: google.rpc.Status in proto3 JSON, with the HTTP status
//! that grpc-gateway gives each gRPC code (contract section 5).

use std::fmt;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use application::ApplicationError;

/// The HTTP status of a gRPC code, per the contract's table.
#[must_use]
pub fn http_status_of(code: i32) -> StatusCode {
    match code {
        0 => StatusCode::OK,
        3 | 9 | 11 => StatusCode::BAD_REQUEST,
        5 => StatusCode::NOT_FOUND,
        6 | 10 => StatusCode::CONFLICT,
        7 => StatusCode::FORBIDDEN,
        16 => StatusCode::UNAUTHORIZED,
        8 => StatusCode::TOO_MANY_REQUESTS,
        14 => StatusCode::SERVICE_UNAVAILABLE,
        12 => StatusCode::NOT_IMPLEMENTED,
        4 => StatusCode::GATEWAY_TIMEOUT,
        1 => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An error answer: gRPC code, message, the optional `zitadel.v1.ErrorDetail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    code: i32,
    message: String,
    detail: Option<(&'static str, String)>,
    http: StatusCode,
    challenge: Option<&'static str>,
}

impl ApiError {
    /// A transport-level refusal with no contract id (bad body, unknown route).
    pub(crate) fn plain(code: i32, message: impl Into<String>, http: StatusCode) -> Self {
        Self {
            code,
            message: message.into(),
            detail: None,
            http,
            challenge: None,
        }
    }

    /// A request body that is not valid for the message: 400, code 3.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::plain(3, message, StatusCode::BAD_REQUEST)
    }

    /// A request body that did not arrive within the body timeout: 408,
    /// code 4 (DEADLINE_EXCEEDED); the connection is closed after it.
    pub(crate) fn body_timeout() -> Self {
        Self::plain(
            4,
            "request body not received in time",
            StatusCode::REQUEST_TIMEOUT,
        )
    }
}

impl From<ApplicationError> for ApiError {
    fn from(error: ApplicationError) -> Self {
        let code = error.code().as_i32();
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
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {})", self.message, self.code)
    }
}

#[derive(Serialize)]
struct StatusBody<'a> {
    code: i32,
    message: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    details: Vec<ErrorDetail<'a>>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    #[serde(rename = "@type")]
    type_url: &'static str,
    id: &'a str,
    message: &'a str,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.http
    }

    fn error_response(&self) -> HttpResponse {
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
            code: self.code,
            message: &self.message,
            details,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_of_the_contract_maps_to_its_status() {
        let table = [
            (3, 400),
            (9, 400),
            (11, 400),
            (5, 404),
            (6, 409),
            (10, 409),
            (7, 403),
            (16, 401),
            (8, 429),
            (13, 500),
            (2, 500),
            (15, 500),
            (14, 503),
            (12, 501),
            (4, 504),
            (1, 499),
        ];
        for (code, status) in table {
            assert_eq!(http_status_of(code).as_u16(), status, "code {code}");
        }
    }
}
