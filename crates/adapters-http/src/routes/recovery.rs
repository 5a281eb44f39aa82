//! Recovery codes over REST: ZITADEL's user service v2 shapes
//! `POST`/`DELETE /v2/users/{user_id}/recovery_codes` (the user themself or
//! an administrator), and the trusted callers' redemption at login,
//! `POST /v1/users/{user_id}/recovery_codes/_check` (the login check's rules
//! and listener).

use std::borrow::Cow;
use std::fmt;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use application::{ApplicationError, GeneratedCodes, Principal, Redeemed};
use domain::UserId;

use super::method_not_allowed;
use crate::HttpState;
use crate::body::message;
use crate::error::ApiError;
use crate::json::{Details, EmptyRequest, V2Details, V2DetailsResponse, VerifyRequest};

pub(crate) const CODES: &str = "/v2/users/{user_id}/recovery_codes";
pub(crate) const CHECK: &str = "/v1/users/{user_id}/recovery_codes/_check";

/// The user service calls (public listener).
pub(crate) fn register(config: &mut web::ServiceConfig) {
    config.service(
        web::resource(CODES)
            .route(web::post().to(generate))
            .route(web::delete().to(remove))
            .default_service(web::to(|| async { method_not_allowed("POST, DELETE") })),
    );
}

/// The trusted callers' redemption (the login check's listener).
pub(crate) fn register_trusted(config: &mut web::ServiceConfig) {
    config.service(
        web::resource(CHECK)
            .route(web::post().to(check))
            .default_service(web::to(|| async { method_not_allowed("POST") })),
    );
}

/// `zitadel.user.v2.GenerateRecoveryCodesRequest` (`user_id` is in the path).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = zitadel::user::v2::GenerateRecoveryCodesRequest)]
pub(crate) struct GenerateRequest {
    /// How many codes, 1 to `recovery.max_codes` (default 10). `null` and
    /// absent both mean 0, which is refused.
    #[serde(default)]
    #[schema(example = 10, minimum = 1)]
    count: Option<u32>,
}

/// `zitadel.user.v2.GenerateRecoveryCodesResponse`: the only place the codes
/// are ever shown.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = zitadel::user::v2::GenerateRecoveryCodesResponse)]
pub(crate) struct GenerateResponse {
    details: V2Details,
    /// The new codes, `XXXXX-XXXXX`, each usable once; every earlier unused
    /// code is gone.
    #[schema(example = json!(["7KQ2M-XW9DA", "H3P0C-RT5VN"]))]
    recovery_codes: Vec<String>,
}

impl fmt::Debug for GenerateResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GenerateResponse")
            .field("details", &self.details)
            .field(
                "recovery_codes",
                &format_args!("<{} redacted>", self.recovery_codes.len()),
            )
            .finish()
    }
}

impl From<GeneratedCodes> for GenerateResponse {
    fn from(generated: GeneratedCodes) -> Self {
        Self {
            details: generated.details.into(),
            recovery_codes: generated
                .codes
                .iter()
                .map(|code| code.expose().to_owned())
                .collect(),
        }
    }
}

/// `otp.v1.CheckRecoveryCodeResponse`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = otp::v1::CheckRecoveryCodeResponse)]
pub(crate) struct CheckResponse {
    details: Details,
    /// Unused codes left (`uint32`; left out when none are).
    #[serde(skip_serializing_if = "is_zero")]
    #[schema(example = 9)]
    remaining: u32,
}

#[allow(clippy::trivially_copy_pass_by_ref)]
const fn is_zero(value: &u32) -> bool {
    *value == 0
}

impl From<Redeemed> for CheckResponse {
    fn from(redeemed: Redeemed) -> Self {
        Self {
            details: redeemed.details.into(),
            remaining: u32::try_from(redeemed.remaining).unwrap_or(u32::MAX),
        }
    }
}

async fn caller(state: &HttpState, request: &HttpRequest) -> Result<Principal, ApiError> {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    Ok(state.auth.authenticate(header).await?)
}

#[utoipa::path(
    post,
    path = CODES,
    params(("user_id" = String, Path, description = "The user: the caller themself, or another user for an administrator.")),
    request_body(content = GenerateRequest, description = "`count`: 1 to `recovery.max_codes`."),
    operation_id = "GenerateRecoveryCodes",
    tag = "user.v2",
    description = "New recovery codes for a user with a ready TOTP factor, replacing every unused one; the answer is the only place they are shown.",
    security(("bearer" = [])),
    responses((status = 200, description = "Done.", body = GenerateResponse), crate::openapi::ErrorAnswers),
)]
pub(crate) async fn generate(
    state: web::Data<HttpState>,
    request: HttpRequest,
    user_id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let caller = caller(&state, &request).await?;
    let body =
        message::<GenerateRequest>("GenerateRecoveryCodesRequest", &request, payload).await?;
    let generated = state
        .factors
        .generate_recovery_codes(&caller, &user_id, body.count.unwrap_or_default())
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(GenerateResponse::from(generated)))
}

#[utoipa::path(
    delete,
    path = CODES,
    params(("user_id" = String, Path, description = "The user: the caller themself, or another user for an administrator.")),
    request_body(content = EmptyRequest, description = "Optional: an empty body is the empty message; unknown fields are ignored."),
    operation_id = "RemoveRecoveryCodes",
    tag = "user.v2",
    description = "Removes the user's unused recovery codes.",
    security(("bearer" = [])),
    responses((status = 200, description = "Done.", body = V2DetailsResponse), crate::openapi::ErrorAnswers),
)]
pub(crate) async fn remove(
    state: web::Data<HttpState>,
    request: HttpRequest,
    user_id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let caller = caller(&state, &request).await?;
    message::<EmptyRequest>("RemoveRecoveryCodesRequest", &request, payload).await?;
    let details = state
        .factors
        .remove_recovery_codes(&caller, &user_id)
        .await?;
    Ok(HttpResponse::Ok().json(V2DetailsResponse::from(details)))
}

#[utoipa::path(
    post,
    path = CHECK,
    params(("user_id" = String, Path, description = "The user whose recovery code is redeemed.")),
    request_body(content = VerifyRequest, description = "`code`: the recovery code as the user typed it (case, spaces and dashes do not matter)."),
    operation_id = "CheckRecoveryCode",
    tag = "login check",
    description = "Beyond ZITADEL: redeems a user's recovery code for another service's login flow, once; wrong codes count towards the same lockout as OTP codes. Served with the login check (internal listener when configured); the caller's token needs the check scope and a listed client.",
    security(("bearer" = [])),
    responses((status = 200, description = "Done.", body = CheckResponse), crate::openapi::ErrorAnswers),
)]
pub(crate) async fn check(
    state: web::Data<HttpState>,
    request: HttpRequest,
    user_id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let caller = caller(&state, &request).await?;
    let user = UserId::parse(user_id.into_inner()).map_err(|error| {
        ApplicationError::InvalidRequest(Cow::Owned(format!(
            "invalid CheckRecoveryCodeRequest.UserId: {error}"
        )))
    })?;
    let body = message::<VerifyRequest>("CheckRecoveryCodeRequest", &request, payload).await?;
    let redeemed = state
        .factors
        .check_recovery_code(&caller, &user, body.code.as_deref().unwrap_or_default())
        .await?;
    Ok(HttpResponse::Ok().json(CheckResponse::from(redeemed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_code_but_json_does() {
        let response = GenerateResponse {
            details: V2Details::from(application::ObjectDetails {
                sequence: 3,
                creation_date: None,
                change_date: chrono::DateTime::UNIX_EPOCH,
                resource_owner: None,
            }),
            recovery_codes: vec!["7KQ2M-XW9DA".to_owned(), "H3P0C-RT5VN".to_owned()],
        };
        let shown = format!("{response:?}");
        assert!(
            !shown.contains("7KQ2M") && !shown.contains("H3P0C"),
            "{shown}"
        );
        assert!(shown.contains("<2 redacted>"), "{shown}");
        let json = serde_json::to_value(&response).unwrap_or_default();
        assert_eq!(json["recoveryCodes"][1], "H3P0C-RT5VN");
        assert_eq!(json["details"]["sequence"], "3");
    }
}
