//! Route groups and the fallback for unknown paths.

pub(crate) mod health;
pub(crate) mod import;
pub(crate) mod otp;
pub(crate) mod recovery;
pub(crate) mod users;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, ResponseError};

use application::StatusCode as Code;

use crate::error::ApiError;

/// Unknown paths answer like grpc-gateway: 404, code 5, "Not Found".
pub(crate) async fn not_found() -> HttpResponse {
    ApiError::plain(Code::NotFound, "Not Found", StatusCode::NOT_FOUND).error_response()
}

/// A known path with another method: like grpc-gateway, 405 with code 12
/// "Method Not Allowed", plus the `Allow` header HTTP asks for.
pub(crate) fn method_not_allowed(allow: &'static str) -> HttpResponse {
    let mut response = ApiError::plain(
        Code::Unimplemented,
        "Method Not Allowed",
        StatusCode::METHOD_NOT_ALLOWED,
    )
    .error_response();
    response
        .headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static(allow));
    response
}
