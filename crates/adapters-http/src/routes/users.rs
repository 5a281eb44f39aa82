//! ZITADEL's user service v2 TOTP calls under `/v2/users/{user_id}/...` and
//! the v1 management calls under `/management/v1/users/{user_id}/...`: the
//! same use cases as the "me" calls, for the user themself or an
//! administrator (the application layer decides who may).

use actix_web::{HttpRequest, HttpResponse, web};

use application::Callers;

use super::{caller, method_not_allowed};
use crate::HttpState;
use crate::body::message;
use crate::error::ApiError;
use crate::json::{
    DetailsResponse, EmptyRequest, ListResponse, MethodTypesResponse, RegisterResponse,
    V2DetailsResponse, VerifyRequest,
};

const TOTP: &str = "/v2/users/{user_id}/totp";
const TOTP_VERIFY: &str = "/v2/users/{user_id}/totp/verify";
const METHODS: &str = "/v2/users/{user_id}/authentication_methods";
const MGMT_OTP: &str = "/management/v1/users/{user_id}/auth_factors/otp";
const MGMT_SEARCH: &str = "/management/v1/users/{user_id}/auth_factors/_search";

pub(crate) fn register(config: &mut web::ServiceConfig) {
    config
        .service(
            web::resource(TOTP)
                .route(web::post().to(register_totp))
                .route(web::delete().to(remove_totp))
                .default_service(web::to(|| async { method_not_allowed("POST, DELETE") })),
        )
        .service(
            web::resource(TOTP_VERIFY)
                .route(web::post().to(verify_totp))
                .default_service(web::to(|| async { method_not_allowed("POST") })),
        )
        .service(
            web::resource(METHODS)
                .route(web::get().to(list_methods))
                .default_service(web::to(|| async { method_not_allowed("GET") })),
        )
        .service(
            web::resource(MGMT_OTP)
                .route(web::delete().to(management_remove))
                .default_service(web::to(|| async { method_not_allowed("DELETE") })),
        )
        .service(
            web::resource(MGMT_SEARCH)
                .route(web::post().to(management_list))
                .default_service(web::to(|| async { method_not_allowed("POST") })),
        );
}

#[utoipa::path(
    post,
    path = TOTP,
    params(("user_id" = String, Path, description = "The user: the caller themself, or another user for an administrator.")),
    request_body(content = EmptyRequest, description = "Optional: an empty body is the empty message; unknown fields are ignored."),
    operation_id = "RegisterTOTP",
    tag = "user.v2",
    description = "Adds a TOTP factor (not ready until verified) for the user; the answer is the only place the secret is shown.",
    security(("bearer" = [])),
    responses((status = 200, description = "Done.", body = RegisterResponse), crate::openapi::ErrorAnswers),
)]
pub(crate) async fn register_totp(
    state: web::Data<HttpState>,
    request: HttpRequest,
    user_id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let caller = caller(&state, &request).await?;
    message::<EmptyRequest>("RegisterTOTPRequest", &request, payload).await?;
    let added = state.factors.add_otp_for(&caller, &user_id).await?;
    Ok(HttpResponse::Ok().json(RegisterResponse::from(added)))
}

#[utoipa::path(
    post,
    path = TOTP_VERIFY,
    params(("user_id" = String, Path, description = "The user: the caller themself, or another user for an administrator.")),
    request_body(content = VerifyRequest, description = "Optional: an empty body is the empty message; unknown fields are ignored."),
    operation_id = "VerifyTOTPRegistration",
    tag = "user.v2",
    description = "Verifies the user's factor with a current code: it becomes ready.",
    security(("bearer" = [])),
    responses((status = 200, description = "Done.", body = V2DetailsResponse), crate::openapi::ErrorAnswers),
)]
pub(crate) async fn verify_totp(
    state: web::Data<HttpState>,
    request: HttpRequest,
    user_id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let caller = caller(&state, &request).await?;
    let body = message::<VerifyRequest>("VerifyTOTPRegistrationRequest", &request, payload).await?;
    let details = state
        .factors
        .verify_otp_for(&caller, &user_id, body.code.as_deref().unwrap_or_default())
        .await?;
    Ok(HttpResponse::Ok().json(V2DetailsResponse::from(details)))
}

#[utoipa::path(
    delete,
    path = TOTP,
    params(("user_id" = String, Path, description = "The user: the caller themself, or another user for an administrator.")),
    request_body(content = EmptyRequest, description = "Optional: an empty body is the empty message; unknown fields are ignored."),
    operation_id = "RemoveTOTP",
    tag = "user.v2",
    description = "Removes the user's factor.",
    security(("bearer" = [])),
    responses((status = 200, description = "Done.", body = V2DetailsResponse), crate::openapi::ErrorAnswers),
)]
pub(crate) async fn remove_totp(
    state: web::Data<HttpState>,
    request: HttpRequest,
    user_id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let caller = caller(&state, &request).await?;
    message::<EmptyRequest>("RemoveTOTPRequest", &request, payload).await?;
    let details = state
        .factors
        .remove_otp_for(&caller, &user_id, Callers::SelfOrAdmin)
        .await?;
    Ok(HttpResponse::Ok().json(V2DetailsResponse::from(details)))
}

/// `GET`: the request's other fields (`domainQuery`) would be query
/// parameters; they filter methods this service does not have, and are ignored.
#[utoipa::path(
    get,
    path = METHODS,
    params(("user_id" = String, Path, description = "The user: the caller themself, or another user for an administrator.")),
    operation_id = "ListAuthenticationMethodTypes",
    tag = "user.v2",
    description = "The user's ready authentication methods; query parameters such as `domainQuery` are ignored.",
    security(("bearer" = [])),
    responses((status = 200, description = "Done.", body = MethodTypesResponse), crate::openapi::ErrorAnswers),
)]
pub(crate) async fn list_methods(
    state: web::Data<HttpState>,
    request: HttpRequest,
    user_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let caller = caller(&state, &request).await?;
    let list = state
        .factors
        .list_factors_for(&caller, &user_id, Callers::SelfOrAdmin)
        .await?;
    Ok(HttpResponse::Ok().json(MethodTypesResponse::from(list)))
}

#[utoipa::path(
    delete,
    path = MGMT_OTP,
    params(("user_id" = String, Path, description = "The user: the caller themself, or another user for an administrator.")),
    request_body(content = EmptyRequest, description = "Optional: an empty body is the empty message; unknown fields are ignored."),
    operation_id = "RemoveHumanAuthFactorOTP",
    tag = "management.v1",
    description = "An administrator removes a user's factor.",
    security(("bearer" = [])),
    responses((status = 200, description = "Done.", body = DetailsResponse), crate::openapi::ErrorAnswers),
)]
pub(crate) async fn management_remove(
    state: web::Data<HttpState>,
    request: HttpRequest,
    user_id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let caller = caller(&state, &request).await?;
    message::<EmptyRequest>("RemoveHumanAuthFactorOTPRequest", &request, payload).await?;
    let details = state
        .factors
        .remove_otp_for(&caller, &user_id, Callers::AdminOnly)
        .await?;
    Ok(HttpResponse::Ok().json(DetailsResponse::from(details)))
}

#[utoipa::path(
    post,
    path = MGMT_SEARCH,
    params(("user_id" = String, Path, description = "The user: the caller themself, or another user for an administrator.")),
    request_body(content = EmptyRequest, description = "Optional: an empty body is the empty message; unknown fields are ignored."),
    operation_id = "ListHumanAuthFactors",
    tag = "management.v1",
    description = "An administrator lists a user's ready factors.",
    security(("bearer" = [])),
    responses((status = 200, description = "Done.", body = ListResponse), crate::openapi::ErrorAnswers),
)]
pub(crate) async fn management_list(
    state: web::Data<HttpState>,
    request: HttpRequest,
    user_id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let caller = caller(&state, &request).await?;
    message::<EmptyRequest>("ListHumanAuthFactorsRequest", &request, payload).await?;
    let list = state
        .factors
        .list_factors_for(&caller, &user_id, Callers::AdminOnly)
        .await?;
    Ok(HttpResponse::Ok().json(ListResponse::from(list.factors)))
}
