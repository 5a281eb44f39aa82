//! List: the user's usable (READY) factors.

use chrono::{DateTime, Utc};

use domain::FactorState;

use super::OtpFactors;
use super::target::{Callers, Target};
use crate::authenticate::Principal;
use crate::error::ApplicationError;

/// The factors of a user at the time they were read (for the v2
/// `ListDetails.timestamp`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactorList {
    /// The READY factors.
    pub factors: Vec<ListedFactor>,
    /// How many unused recovery codes the user has (0: none).
    pub recovery_codes: usize,
    /// When they were read.
    pub read_at: DateTime<Utc>,
}

/// A factor as List shows it. Only OTP exists in this service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListedFactor {
    /// A READY authenticator-app factor.
    Otp,
}

impl OtpFactors {
    /// The signed-in user's READY factors; pending ones are not listed.
    ///
    /// # Errors
    /// Store failures.
    #[tracing::instrument(name = "ListFactors", skip_all, fields(user_id = %principal.user_id))]
    pub async fn list_factors(
        &self,
        principal: &Principal,
    ) -> Result<Vec<ListedFactor>, ApplicationError> {
        self.list_of(&Target::own(principal)).await
    }

    /// List for `user_id`: `ListAuthenticationMethodTypes`
    /// ([`Callers::SelfOrAdmin`]) and `ListHumanAuthFactors`
    /// ([`Callers::AdminOnly`]).
    ///
    /// # Errors
    /// `InvalidRequest` for a bad user id, `PermissionDenied` for a caller
    /// who may not act on the user; store failures.
    #[tracing::instrument(name = "ListFactorsOf", skip_all, fields(caller = %caller.user_id))]
    pub async fn list_factors_for(
        &self,
        caller: &Principal,
        user_id: &str,
        callers: Callers,
    ) -> Result<FactorList, ApplicationError> {
        let request = match callers {
            Callers::SelfOrAdmin => "ListAuthenticationMethodTypesRequest",
            Callers::AdminOnly => "ListHumanAuthFactorsRequest",
        };
        let target = self.authorize(caller, user_id, request, callers).await?;
        let read_at = self.now();
        let factors = self.list_of(&target).await?;
        let recovery_codes = self
            .store
            .recovery_codes(&target.user)
            .await?
            .map_or(0, |codes| codes.remaining());
        Ok(FactorList {
            factors,
            recovery_codes,
            read_at,
        })
    }

    async fn list_of(&self, target: &Target) -> Result<Vec<ListedFactor>, ApplicationError> {
        let factor = self.store.find(&target.user).await?;
        Ok(factor
            .filter(|factor| factor.state() == FactorState::Ready)
            .map(|_| ListedFactor::Otp)
            .into_iter()
            .collect())
    }
}
