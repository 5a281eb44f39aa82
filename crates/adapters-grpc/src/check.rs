//! `otp.v1.OtpCheckService`: this service's own login-time check for
//! trusted callers (not part of ZITADEL's API).

use std::borrow::Cow;

use tonic::{Request, Response, Status};

use application::{ApplicationError, Authenticator, OtpFactors};
use domain::UserId;

use crate::convert;
use crate::error::status_of;
use crate::proto::otp::v1::otp_check_service_server::{OtpCheckService, OtpCheckServiceServer};
use crate::proto::otp::v1::{
    CheckOtpRequest, CheckOtpResponse, CheckRecoveryCodeRequest, CheckRecoveryCodeResponse,
};
use crate::service::{MAX_MESSAGE_BYTES, authenticate};

/// The `OtpCheckService` implementation over the check use case.
#[derive(Debug, Clone)]
pub struct OtpCheckServiceImpl {
    factors: OtpFactors,
    auth: Authenticator,
}

impl OtpCheckServiceImpl {
    /// Serves the check to the callers `auth` authenticates.
    #[must_use]
    pub fn new(factors: OtpFactors, auth: Authenticator) -> Self {
        Self { factors, auth }
    }

    /// The tonic service, refusing request messages over [`MAX_MESSAGE_BYTES`].
    #[must_use]
    pub fn into_server(self) -> OtpCheckServiceServer<Self> {
        OtpCheckServiceServer::new(self).max_decoding_message_size(MAX_MESSAGE_BYTES)
    }
}

#[tonic::async_trait]
impl OtpCheckService for OtpCheckServiceImpl {
    async fn check_otp(
        &self,
        request: Request<CheckOtpRequest>,
    ) -> Result<Response<CheckOtpResponse>, Status> {
        let caller = authenticate(&self.auth, &request).await?;
        let message = request.get_ref();
        let user = parse_user_id(&message.user_id).map_err(|error| status_of(&error))?;
        let details = self
            .factors
            .check_otp(&caller, &user, &message.code)
            .await
            .map_err(|error| status_of(&error))?;
        Ok(Response::new(CheckOtpResponse {
            details: Some(convert::details(details)),
        }))
    }

    async fn check_recovery_code(
        &self,
        request: Request<CheckRecoveryCodeRequest>,
    ) -> Result<Response<CheckRecoveryCodeResponse>, Status> {
        crate::recovery::check(&self.factors, &self.auth, request).await
    }
}

/// The checked user id, before anything records it: spans and log lines
/// only ever see an id of 1 to 200 bytes without control characters (a raw
/// `\n` would forge a line in the text log format).
///
/// # Errors
/// `InvalidRequest` naming the rule the id breaks.
fn parse_user_id(raw: &str) -> Result<UserId, ApplicationError> {
    UserId::parse(raw).map_err(|error| {
        ApplicationError::InvalidRequest(Cow::Owned(format!(
            "invalid CheckOTPRequest.UserId: {error}"
        )))
    })
}
