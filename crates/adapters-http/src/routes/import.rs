//! `POST /v2/users/{user_id}/totp/_import`: an administrator imports a TOTP
//! secret exported by another system (`otp.v1.OtpImportService/ImportTOTP`
//! over gRPC). Not part of ZITADEL's API, which imports only inside user
//! creation; the answer is the v2 calls' `{"details": …}`.

use std::fmt;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use secrecy::SecretString;
use serde::Deserialize;
use utoipa::ToSchema;

use application::ImportOtp;

use super::method_not_allowed;
use crate::HttpState;
use crate::body::message;
use crate::error::ApiError;
use crate::json::V2DetailsResponse;

pub(crate) const IMPORT: &str = "/v2/users/{user_id}/totp/_import";

pub(crate) fn register(config: &mut web::ServiceConfig) {
    config.service(
        web::resource(IMPORT)
            .route(web::post().to(import_totp))
            .default_service(web::to(|| async { method_not_allowed("POST") })),
    );
}

/// `otp.v1.ImportTOTPRequest` (whose `user_id` is in the path): a secret
/// exported by another system and the parameters it runs with. Left-out
/// fields take the otpauth defaults (SHA1, 6 digits, 30 seconds, not verified).
#[derive(Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = otp::v1::ImportTOTPRequest)]
pub(crate) struct ImportRequest {
    /// The base32 secret: any case, spaces or hyphens between groups, `=` padding optional; at least 128 bits (80 with `import.allow_legacy_80_bit`).
    #[serde(default)]
    #[schema(example = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")]
    secret: Option<String>,
    /// `SHA1` (default), `SHA256` or `SHA512`, any case.
    #[serde(default)]
    #[schema(example = "SHA1")]
    algorithm: Option<String>,
    /// 6 (default) or 8.
    #[serde(default)]
    #[schema(example = 6, minimum = 0, maximum = 8)]
    digits: Option<u32>,
    /// Seconds per code, 10 to 300; default 30.
    #[serde(default)]
    #[schema(example = 30, minimum = 0, maximum = 300)]
    period: Option<u32>,
    /// `true`: the factor is ready at once (the secret is on the user's phone already); `false` (default): not ready until the user verifies a first code.
    #[serde(default)]
    verified: Option<bool>,
}

/// Never the secret: only whether one came and how long it is.
impl fmt::Debug for ImportRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImportRequest")
            .field(
                "secret",
                &self
                    .secret
                    .as_ref()
                    .map(|secret| format!("<{} chars>", secret.len())),
            )
            .field("algorithm", &self.algorithm)
            .field("digits", &self.digits)
            .field("period", &self.period)
            .field("verified", &self.verified)
            .finish()
    }
}

impl From<ImportRequest> for ImportOtp {
    fn from(request: ImportRequest) -> Self {
        Self {
            secret: SecretString::from(request.secret.unwrap_or_default()),
            algorithm: request.algorithm.unwrap_or_default(),
            digits: request.digits.unwrap_or_default(),
            period: request.period.unwrap_or_default(),
            ready: request.verified.unwrap_or_default(),
        }
    }
}

#[utoipa::path(
    post,
    path = IMPORT,
    params(("user_id" = String, Path, description = "The user whose factor is imported.")),
    request_body(content = ImportRequest, description = "Optional: an empty body is the empty message (and is refused: the secret is missing); unknown fields are ignored."),
    operation_id = "ImportTOTP",
    tag = "import",
    description = "An administrator imports a TOTP secret exported by another system as the user's factor: ready when `verified`, else not ready until the user's first code. Refused when the user has a ready factor (409, as Add), for a secret that is not base32 or too short, or unsupported parameters (400).",
    security(("bearer" = [])),
    responses((status = 200, description = "Done.", body = V2DetailsResponse), crate::openapi::ErrorAnswers),
)]
pub(crate) async fn import_totp(
    state: web::Data<HttpState>,
    request: HttpRequest,
    user_id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    let caller = state.auth.authenticate(header).await?;
    let body = message::<ImportRequest>("ImportTOTPRequest", &request, payload).await?;
    let details = state
        .factors
        .import_otp_for(&caller, &user_id, &body.into())
        .await?;
    Ok(HttpResponse::Ok().json(V2DetailsResponse::from(details)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_secret() {
        let request: ImportRequest = serde_json::from_str(
            r#"{"secret":"JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP","verified":true}"#,
        )
        .unwrap();
        let shown = format!("{request:?}");
        assert!(shown.contains("<32 chars>"), "{shown}");
        assert!(!shown.contains("JBSW"), "{shown}");
        let import = ImportOtp::from(request);
        assert!(import.ready);
        assert!(!format!("{import:?}").contains("JBSW"));
    }
}
