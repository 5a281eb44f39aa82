//! Recovery codes over gRPC (and so gRPC-web and Connect): ZITADEL's
//! `UserService.GenerateRecoveryCodes` / `RemoveRecoveryCodes` and this
//! service's own `OtpCheckService.CheckRecoveryCode`. The trait impls in
//! `users.rs` and `check.rs` delegate here.

use std::borrow::Cow;

use tonic::{Request, Response, Status};

use application::{ApplicationError, Authenticator, OtpFactors};
use domain::UserId;

use crate::convert;
use crate::error::status_of;
use crate::proto::otp::v1::{CheckRecoveryCodeRequest, CheckRecoveryCodeResponse};
use crate::proto::zitadel::user::v2::{
    GenerateRecoveryCodesRequest, GenerateRecoveryCodesResponse, RemoveRecoveryCodesRequest,
    RemoveRecoveryCodesResponse,
};
use crate::service::authenticate;
use crate::users::v2_details;

pub(crate) async fn generate(
    factors: &OtpFactors,
    auth: &Authenticator,
    request: Request<GenerateRecoveryCodesRequest>,
) -> Result<Response<GenerateRecoveryCodesResponse>, Status> {
    let caller = authenticate(auth, &request).await?;
    let message = request.get_ref();
    let generated = factors
        .generate_recovery_codes(&caller, &message.user_id, message.count)
        .await
        .map_err(|error| status_of(&error))?;
    Ok(Response::new(GenerateRecoveryCodesResponse {
        details: Some(v2_details(generated.details)),
        recovery_codes: generated
            .codes
            .iter()
            .map(|code| code.expose().to_owned())
            .collect(),
    }))
}

pub(crate) async fn remove(
    factors: &OtpFactors,
    auth: &Authenticator,
    request: Request<RemoveRecoveryCodesRequest>,
) -> Result<Response<RemoveRecoveryCodesResponse>, Status> {
    let caller = authenticate(auth, &request).await?;
    let details = factors
        .remove_recovery_codes(&caller, &request.get_ref().user_id)
        .await
        .map_err(|error| status_of(&error))?;
    Ok(Response::new(RemoveRecoveryCodesResponse {
        details: Some(v2_details(details)),
    }))
}

pub(crate) async fn check(
    factors: &OtpFactors,
    auth: &Authenticator,
    request: Request<CheckRecoveryCodeRequest>,
) -> Result<Response<CheckRecoveryCodeResponse>, Status> {
    let caller = authenticate(auth, &request).await?;
    let message = request.get_ref();
    // Parsed before anything records it (see `check::parse_user_id`).
    let user = UserId::parse(&message.user_id).map_err(|error| {
        status_of(&ApplicationError::InvalidRequest(Cow::Owned(format!(
            "invalid CheckRecoveryCodeRequest.UserId: {error}"
        ))))
    })?;
    let redeemed = factors
        .check_recovery_code(&caller, &user, &message.code)
        .await
        .map_err(|error| status_of(&error))?;
    Ok(Response::new(CheckRecoveryCodeResponse {
        details: Some(convert::details(redeemed.details)),
        remaining: u32::try_from(redeemed.remaining).unwrap_or(u32::MAX),
    }))
}

// The codes never reach a log through Debug.

impl std::fmt::Debug for GenerateRecoveryCodesResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenerateRecoveryCodesResponse")
            .field("details", &self.details)
            .field(
                "recovery_codes",
                &format_args!("[{} REDACTED]", self.recovery_codes.len()),
            )
            .finish()
    }
}

impl std::fmt::Debug for CheckRecoveryCodeRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckRecoveryCodeRequest")
            .field("user_id", &self.user_id)
            .field("code", &"[REDACTED]")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_code() {
        let response = GenerateRecoveryCodesResponse {
            details: None,
            recovery_codes: vec!["7KQ2M-XW9DA".to_owned(), "H3P0C-RT5VN".to_owned()],
        };
        let shown = format!("{response:?}");
        assert!(
            !shown.contains("7KQ2M") && !shown.contains("H3P0C"),
            "{shown}"
        );
        assert!(shown.contains("[2 REDACTED]"));
        let request = CheckRecoveryCodeRequest {
            user_id: "u1".to_owned(),
            code: "7KQ2M-XW9DA".to_owned(),
        };
        assert!(!format!("{request:?}").contains("7KQ2M"));
    }
}
