//! `zitadel.user.v2.UserService` (the four TOTP calls) and
//! `zitadel.management.v1.ManagementService` (the two OTP administration
//! calls): the same use cases as `AuthService`, on the user the request
//! names; the application layer decides whether the caller may.

use tonic::{Request, Response, Status};

use application::{Authenticator, Callers, FactorList, ObjectDetails, OtpFactors};

use crate::convert;
use crate::error::status_of;
use crate::proto::zitadel::management::v1::management_service_server::{
    ManagementService, ManagementServiceServer,
};
use crate::proto::zitadel::management::v1::{
    ListHumanAuthFactorsRequest, ListHumanAuthFactorsResponse, RemoveHumanAuthFactorOtpRequest,
    RemoveHumanAuthFactorOtpResponse,
};
use crate::proto::zitadel::object::v2::{Details, ListDetails};
use crate::proto::zitadel::user::v2::user_service_server::{UserService, UserServiceServer};
use crate::proto::zitadel::user::v2::{
    AuthenticationMethodType, GenerateRecoveryCodesRequest, GenerateRecoveryCodesResponse,
    ListAuthenticationMethodTypesRequest, ListAuthenticationMethodTypesResponse,
    RegisterTotpRequest, RegisterTotpResponse, RemoveRecoveryCodesRequest,
    RemoveRecoveryCodesResponse, RemoveTotpRequest, RemoveTotpResponse,
    VerifyTotpRegistrationRequest, VerifyTotpRegistrationResponse,
};
use crate::service::{MAX_MESSAGE_BYTES, authenticate};

/// `zitadel.object.v2.Details` (no `creation_date`, as ZITADEL's user service).
pub(crate) fn v2_details(details: ObjectDetails) -> Details {
    Details {
        sequence: details.sequence,
        change_date: Some(convert::timestamp(details.change_date)),
        resource_owner: details
            .resource_owner
            .map(|org| org.as_str().to_owned())
            .unwrap_or_default(),
        creation_date: None,
    }
}

/// `ListAuthenticationMethodTypesResponse` of the user's READY factors.
pub(crate) fn method_types(list: FactorList) -> ListAuthenticationMethodTypesResponse {
    let auth_method_types: Vec<i32> = list
        .factors
        .iter()
        .map(|application::ListedFactor::Otp| AuthenticationMethodType::Totp.into())
        .chain((list.recovery_codes > 0).then_some(AuthenticationMethodType::RecoveryCode.into()))
        .collect();
    ListAuthenticationMethodTypesResponse {
        details: Some(ListDetails {
            total_result: auth_method_types.len() as u64,
            processed_sequence: 0,
            timestamp: Some(convert::timestamp(list.read_at)),
        }),
        auth_method_types,
        recovery_codes_remaining: u32::try_from(list.recovery_codes).unwrap_or(u32::MAX),
    }
}

/// The `UserService` implementation over the use cases.
#[derive(Debug, Clone)]
pub struct UserServiceImpl {
    factors: OtpFactors,
    auth: Authenticator,
}

impl UserServiceImpl {
    /// Serves `factors` to the callers `auth` authenticates.
    #[must_use]
    pub fn new(factors: OtpFactors, auth: Authenticator) -> Self {
        Self { factors, auth }
    }

    /// The tonic service, refusing request messages over [`MAX_MESSAGE_BYTES`].
    #[must_use]
    pub fn into_server(self) -> UserServiceServer<Self> {
        UserServiceServer::new(self).max_decoding_message_size(MAX_MESSAGE_BYTES)
    }
}

#[tonic::async_trait]
impl UserService for UserServiceImpl {
    async fn register_totp(
        &self,
        request: Request<RegisterTotpRequest>,
    ) -> Result<Response<RegisterTotpResponse>, Status> {
        let caller = authenticate(&self.auth, &request).await?;
        let added = self
            .factors
            .add_otp_for(&caller, &request.get_ref().user_id)
            .await
            .map_err(|error| status_of(&error))?;
        Ok(Response::new(convert::registered(added)))
    }

    async fn verify_totp_registration(
        &self,
        request: Request<VerifyTotpRegistrationRequest>,
    ) -> Result<Response<VerifyTotpRegistrationResponse>, Status> {
        let caller = authenticate(&self.auth, &request).await?;
        let message = request.get_ref();
        let details = self
            .factors
            .verify_otp_for(&caller, &message.user_id, &message.code)
            .await
            .map_err(|error| status_of(&error))?;
        Ok(Response::new(VerifyTotpRegistrationResponse {
            details: Some(v2_details(details)),
        }))
    }

    async fn remove_totp(
        &self,
        request: Request<RemoveTotpRequest>,
    ) -> Result<Response<RemoveTotpResponse>, Status> {
        let caller = authenticate(&self.auth, &request).await?;
        let details = self
            .factors
            .remove_otp_for(&caller, &request.get_ref().user_id, Callers::SelfOrAdmin)
            .await
            .map_err(|error| status_of(&error))?;
        Ok(Response::new(RemoveTotpResponse {
            details: Some(v2_details(details)),
        }))
    }

    async fn list_authentication_method_types(
        &self,
        request: Request<ListAuthenticationMethodTypesRequest>,
    ) -> Result<Response<ListAuthenticationMethodTypesResponse>, Status> {
        let caller = authenticate(&self.auth, &request).await?;
        let list = self
            .factors
            .list_factors_for(&caller, &request.get_ref().user_id, Callers::SelfOrAdmin)
            .await
            .map_err(|error| status_of(&error))?;
        Ok(Response::new(method_types(list)))
    }

    async fn generate_recovery_codes(
        &self,
        request: Request<GenerateRecoveryCodesRequest>,
    ) -> Result<Response<GenerateRecoveryCodesResponse>, Status> {
        crate::recovery::generate(&self.factors, &self.auth, request).await
    }

    async fn remove_recovery_codes(
        &self,
        request: Request<RemoveRecoveryCodesRequest>,
    ) -> Result<Response<RemoveRecoveryCodesResponse>, Status> {
        crate::recovery::remove(&self.factors, &self.auth, request).await
    }
}

/// The `ManagementService` implementation over the use cases.
#[derive(Debug, Clone)]
pub struct ManagementServiceImpl {
    factors: OtpFactors,
    auth: Authenticator,
}

impl ManagementServiceImpl {
    /// Serves `factors` to the administrators `auth` authenticates.
    #[must_use]
    pub fn new(factors: OtpFactors, auth: Authenticator) -> Self {
        Self { factors, auth }
    }

    /// The tonic service, refusing request messages over [`MAX_MESSAGE_BYTES`].
    #[must_use]
    pub fn into_server(self) -> ManagementServiceServer<Self> {
        ManagementServiceServer::new(self).max_decoding_message_size(MAX_MESSAGE_BYTES)
    }
}

#[tonic::async_trait]
impl ManagementService for ManagementServiceImpl {
    async fn list_human_auth_factors(
        &self,
        request: Request<ListHumanAuthFactorsRequest>,
    ) -> Result<Response<ListHumanAuthFactorsResponse>, Status> {
        let caller = authenticate(&self.auth, &request).await?;
        let list = self
            .factors
            .list_factors_for(&caller, &request.get_ref().user_id, Callers::AdminOnly)
            .await
            .map_err(|error| status_of(&error))?;
        Ok(Response::new(ListHumanAuthFactorsResponse {
            result: convert::listed(list.factors).result,
        }))
    }

    async fn remove_human_auth_factor_otp(
        &self,
        request: Request<RemoveHumanAuthFactorOtpRequest>,
    ) -> Result<Response<RemoveHumanAuthFactorOtpResponse>, Status> {
        let caller = authenticate(&self.auth, &request).await?;
        let details = self
            .factors
            .remove_otp_for(&caller, &request.get_ref().user_id, Callers::AdminOnly)
            .await
            .map_err(|error| status_of(&error))?;
        Ok(Response::new(RemoveHumanAuthFactorOtpResponse {
            details: Some(convert::details(details)),
        }))
    }
}
