//! List: the user's usable (READY) factors.

use domain::FactorState;

use super::OtpFactors;
use crate::authenticate::Principal;
use crate::error::ApplicationError;

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
        let factor = self.store.find(&principal.user_id).await?;
        Ok(factor
            .filter(|factor| factor.state == FactorState::Ready)
            .map(|_| ListedFactor::Otp)
            .into_iter()
            .collect())
    }
}
