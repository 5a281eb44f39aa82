//! `otp.v1.OtpImportService`: an administrator imports a TOTP secret
//! exported by another system (not part of ZITADEL's API).

use std::fmt;

use secrecy::SecretString;
use tonic::{Request, Response, Status};

use application::{Authenticator, ImportOtp, OtpFactors};

use crate::error::status_of;
use crate::proto::otp::v1::otp_import_service_server::{OtpImportService, OtpImportServiceServer};
use crate::proto::otp::v1::{ImportTotpRequest, ImportTotpResponse};
use crate::service::{MAX_MESSAGE_BYTES, authenticate};
use crate::users::v2_details;

/// The `OtpImportService` implementation over the import use case.
#[derive(Debug, Clone)]
pub struct OtpImportServiceImpl {
    factors: OtpFactors,
    auth: Authenticator,
}

impl OtpImportServiceImpl {
    /// Serves the import to the administrators `auth` authenticates.
    #[must_use]
    pub fn new(factors: OtpFactors, auth: Authenticator) -> Self {
        Self { factors, auth }
    }

    /// The tonic service, refusing request messages over [`MAX_MESSAGE_BYTES`].
    #[must_use]
    pub fn into_server(self) -> OtpImportServiceServer<Self> {
        OtpImportServiceServer::new(self).max_decoding_message_size(MAX_MESSAGE_BYTES)
    }
}

/// The request without its secret (the generated Debug is skipped).
impl fmt::Debug for ImportTotpRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImportTotpRequest")
            .field("user_id", &self.user_id)
            .field("secret", &format_args!("<{} chars>", self.secret.len()))
            .field("algorithm", &self.algorithm)
            .field("digits", &self.digits)
            .field("period", &self.period)
            .field("verified", &self.verified)
            .finish()
    }
}

#[tonic::async_trait]
impl OtpImportService for OtpImportServiceImpl {
    async fn import_totp(
        &self,
        request: Request<ImportTotpRequest>,
    ) -> Result<Response<ImportTotpResponse>, Status> {
        let caller = authenticate(&self.auth, &request).await?;
        let message = request.into_inner();
        let import = ImportOtp {
            secret: SecretString::from(message.secret),
            algorithm: message.algorithm,
            digits: message.digits,
            period: message.period,
            ready: message.verified,
        };
        let details = self
            .factors
            .import_otp_for(&caller, &message.user_id, &import)
            .await
            .map_err(|error| status_of(&error))?;
        Ok(Response::new(ImportTotpResponse {
            details: Some(v2_details(details)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_secret() {
        let request = ImportTotpRequest {
            user_id: "u1".into(),
            secret: "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP".into(),
            verified: true,
            ..ImportTotpRequest::default()
        };
        let shown = format!("{request:?}");
        assert!(shown.contains("<32 chars>"), "{shown}");
        assert!(!shown.contains("JBSW"), "{shown}");
    }
}
