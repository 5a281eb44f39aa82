//! `zitadel.auth.v1.AuthService`: the four OTP calls. Each reads the
//! `authorization` metadata, authenticates it like the REST adapter does,
//! calls its use case and renders the answer or the error.

use tonic::{Request, Response, Status};

use application::{Authenticator, OtpFactors, Principal};

use crate::convert;
use crate::error::status_of;
use crate::proto::zitadel::auth::v1::auth_service_server::{AuthService, AuthServiceServer};
use crate::proto::zitadel::auth::v1::{
    AddMyAuthFactorOtpRequest, AddMyAuthFactorOtpResponse, ListMyAuthFactorsRequest,
    ListMyAuthFactorsResponse, RemoveMyAuthFactorOtpRequest, RemoveMyAuthFactorOtpResponse,
    VerifyMyAuthFactorOtpRequest, VerifyMyAuthFactorOtpResponse,
};

/// Largest request message accepted, in bytes (as the REST adapter's body limit).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// The `AuthService` implementation over the use cases.
#[derive(Debug, Clone)]
pub struct AuthServiceImpl {
    factors: OtpFactors,
    auth: Authenticator,
}

impl AuthServiceImpl {
    /// Serves `factors` to the users `auth` authenticates.
    #[must_use]
    pub fn new(factors: OtpFactors, auth: Authenticator) -> Self {
        Self { factors, auth }
    }

    /// The tonic service, refusing request messages over [`MAX_MESSAGE_BYTES`].
    #[must_use]
    pub fn into_server(self) -> AuthServiceServer<Self> {
        AuthServiceServer::new(self).max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// The signed-in user ("me") of this request.
    async fn me<T>(&self, request: &Request<T>) -> Result<Principal, Status> {
        authenticate(&self.auth, request).await
    }
}

/// The principal of a request's `authorization` metadata.
pub(crate) async fn authenticate<T>(
    auth: &Authenticator,
    request: &Request<T>,
) -> Result<Principal, Status> {
    let header = request
        .metadata()
        .get("authorization")
        .map(|value| value.as_bytes());
    auth.authenticate(header)
        .await
        .map_err(|error| status_of(&error))
}

#[tonic::async_trait]
impl AuthService for AuthServiceImpl {
    async fn add_my_auth_factor_otp(
        &self,
        request: Request<AddMyAuthFactorOtpRequest>,
    ) -> Result<Response<AddMyAuthFactorOtpResponse>, Status> {
        let principal = self.me(&request).await?;
        let added = self
            .factors
            .add_otp(&principal)
            .await
            .map_err(|error| status_of(&error))?;
        Ok(Response::new(convert::added(added)))
    }

    async fn verify_my_auth_factor_otp(
        &self,
        request: Request<VerifyMyAuthFactorOtpRequest>,
    ) -> Result<Response<VerifyMyAuthFactorOtpResponse>, Status> {
        let principal = self.me(&request).await?;
        let details = self
            .factors
            .verify_otp(&principal, &request.get_ref().code)
            .await
            .map_err(|error| status_of(&error))?;
        Ok(Response::new(VerifyMyAuthFactorOtpResponse {
            details: Some(convert::details(details)),
        }))
    }

    async fn remove_my_auth_factor_otp(
        &self,
        request: Request<RemoveMyAuthFactorOtpRequest>,
    ) -> Result<Response<RemoveMyAuthFactorOtpResponse>, Status> {
        let principal = self.me(&request).await?;
        let details = self
            .factors
            .remove_otp(&principal)
            .await
            .map_err(|error| status_of(&error))?;
        Ok(Response::new(RemoveMyAuthFactorOtpResponse {
            details: Some(convert::details(details)),
        }))
    }

    async fn list_my_auth_factors(
        &self,
        request: Request<ListMyAuthFactorsRequest>,
    ) -> Result<Response<ListMyAuthFactorsResponse>, Status> {
        let principal = self.me(&request).await?;
        let factors = self
            .factors
            .list_factors(&principal)
            .await
            .map_err(|error| status_of(&error))?;
        Ok(Response::new(convert::listed(factors)))
    }
}
