//! Route groups and the fallback for unknown paths.

pub(crate) mod health;
pub(crate) mod import;
pub(crate) mod otp;
pub(crate) mod recovery;
pub(crate) mod users;

use std::borrow::Cow;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, ResponseError};

use application::{ApplicationError, Principal, StatusCode as Code};
use domain::UserId;

use crate::HttpState;
use crate::error::ApiError;

/// The caller of this request: the signed-in user, the administrator or
/// the calling service its `Authorization` header names.
pub(crate) async fn caller(
    state: &HttpState,
    request: &HttpRequest,
) -> Result<Principal, ApiError> {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    Ok(state.auth.authenticate(header).await?)
}

/// The user a path names, parsed before anything records it: the path is
/// percent-decoded, and a raw `%0a` in a span field would forge a line in
/// the text log format. A bad one is 400 naming `<message>.UserId`.
pub(crate) fn path_user(id: String, message: &str) -> Result<UserId, ApiError> {
    UserId::parse(id).map_err(|error| {
        ApplicationError::InvalidRequest(Cow::Owned(format!("invalid {message}.UserId: {error}")))
            .into()
    })
}

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
