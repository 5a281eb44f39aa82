//! `/auth/v1/users/me/auth_factors/...`: the four OTP calls; and
//! `/v1/users/{user_id}/otp/_check`, the login check for trusted callers.

use actix_web::{HttpRequest, HttpResponse, web};

use super::{caller, method_not_allowed, path_user};
use crate::HttpState;
use crate::body::message;
use crate::error::ApiError;
use crate::json::{AddResponse, DetailsResponse, EmptyRequest, ListResponse, VerifyRequest};

const OTP: &str = "/auth/v1/users/me/auth_factors/otp";
const VERIFY: &str = "/auth/v1/users/me/auth_factors/otp/_verify";
const SEARCH: &str = "/auth/v1/users/me/auth_factors/_search";
pub(crate) const CHECK: &str = "/v1/users/{user_id}/otp/_check";

pub(crate) fn register(config: &mut web::ServiceConfig) {
    config
        .service(
            web::resource(OTP)
                .route(web::post().to(add))
                .route(web::delete().to(remove))
                .default_service(web::to(|| async { method_not_allowed("POST, DELETE") })),
        )
        .service(
            web::resource(VERIFY)
                .route(web::post().to(verify))
                .default_service(web::to(|| async { method_not_allowed("POST") })),
        )
        .service(
            web::resource(SEARCH)
                .route(web::post().to(list))
                .default_service(web::to(|| async { method_not_allowed("POST") })),
        );
}

/// The calls of trusted callers: the login check.
pub(crate) fn register_trusted(config: &mut web::ServiceConfig) {
    config.service(
        web::resource(CHECK)
            .route(web::post().to(check))
            .default_service(web::to(|| async { method_not_allowed("POST") })),
    );
}

#[utoipa::path(
    post,
    path = OTP,
    request_body(content = EmptyRequest, description = "Optional: an empty body is the empty message; unknown fields are ignored."),
    operation_id = "AddMyAuthFactorOTP",
    tag = "auth.v1",
    description = "Adds a TOTP factor (not ready until verified) for the signed-in user; the answer is the only place the secret is shown.",
    security(("bearer" = [])),
    responses((status = 200, description = "Done.", body = AddResponse), crate::openapi::ErrorAnswers),
)]
pub(crate) async fn add(
    state: web::Data<HttpState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let principal = caller(&state, &request).await?;
    message::<EmptyRequest>("AddMyAuthFactorOTPRequest", &request, payload).await?;
    let added = state.factors.add_otp(&principal).await?;
    Ok(HttpResponse::Ok().json(AddResponse::from(added)))
}

#[utoipa::path(
    post,
    path = VERIFY,
    request_body(content = VerifyRequest, description = "Optional: an empty body is the empty message; unknown fields are ignored."),
    operation_id = "VerifyMyAuthFactorOTP",
    tag = "auth.v1",
    description = "Verifies the signed-in user's factor with a current code: it becomes ready.",
    security(("bearer" = [])),
    responses((status = 200, description = "Done.", body = DetailsResponse), crate::openapi::ErrorAnswers),
)]
pub(crate) async fn verify(
    state: web::Data<HttpState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let principal = caller(&state, &request).await?;
    let body = message::<VerifyRequest>("VerifyMyAuthFactorOTPRequest", &request, payload).await?;
    let details = state
        .factors
        .verify_otp(&principal, body.code.as_deref().unwrap_or_default())
        .await?;
    Ok(HttpResponse::Ok().json(DetailsResponse::from(details)))
}

#[utoipa::path(
    delete,
    path = OTP,
    request_body(content = EmptyRequest, description = "Optional: an empty body is the empty message; unknown fields are ignored."),
    operation_id = "RemoveMyAuthFactorOTP",
    tag = "auth.v1",
    description = "Removes the signed-in user's factor.",
    security(("bearer" = [])),
    responses((status = 200, description = "Done.", body = DetailsResponse), crate::openapi::ErrorAnswers),
)]
pub(crate) async fn remove(
    state: web::Data<HttpState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let principal = caller(&state, &request).await?;
    message::<EmptyRequest>("RemoveMyAuthFactorOTPRequest", &request, payload).await?;
    let details = state.factors.remove_otp(&principal).await?;
    Ok(HttpResponse::Ok().json(DetailsResponse::from(details)))
}

#[utoipa::path(
    post,
    path = SEARCH,
    request_body(content = EmptyRequest, description = "Optional: an empty body is the empty message; unknown fields are ignored."),
    operation_id = "ListMyAuthFactors",
    tag = "auth.v1",
    description = "Lists the signed-in user's ready factors (an empty list leaves `result` out).",
    security(("bearer" = [])),
    responses((status = 200, description = "Done.", body = ListResponse), crate::openapi::ErrorAnswers),
)]
pub(crate) async fn list(
    state: web::Data<HttpState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let principal = caller(&state, &request).await?;
    message::<EmptyRequest>("ListMyAuthFactorsRequest", &request, payload).await?;
    let factors = state.factors.list_factors(&principal).await?;
    Ok(HttpResponse::Ok().json(ListResponse::from(factors)))
}

/// The login check: the caller is a trusted service (its token needs the
/// check scope), the user comes from the path.
#[utoipa::path(
    post,
    path = CHECK,
    params(("user_id" = String, Path, description = "The user whose code is checked.")),
    request_body(content = VerifyRequest, description = "Optional: an empty body is the empty message; unknown fields are ignored."),
    operation_id = "CheckOTP",
    tag = "login check",
    description = "Beyond ZITADEL: checks a user's code for another service's login flow. Served on the internal listener (REST 8082) when it is configured; the caller's token needs the check scope and a listed client.",
    security(("bearer" = [])),
    responses((status = 200, description = "Done.", body = DetailsResponse), crate::openapi::ErrorAnswers),
)]
pub(crate) async fn check(
    state: web::Data<HttpState>,
    request: HttpRequest,
    user_id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let caller = caller(&state, &request).await?;
    let user = path_user(user_id.into_inner(), "CheckOTPRequest")?;
    let body = message::<VerifyRequest>("CheckOTPRequest", &request, payload).await?;
    let details = state
        .factors
        .check_otp(&caller, &user, body.code.as_deref().unwrap_or_default())
        .await?;
    Ok(HttpResponse::Ok().json(DetailsResponse::from(details)))
}
