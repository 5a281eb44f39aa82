//! Whose factor a call acts on, and whether the caller may: the one
//! authorization rule of every call. The user themself, an administrator of
//! the factor's resource owner (the token's org claim equals it), or an
//! instance administrator (see [`AdminPolicy`](crate::AdminPolicy)); anyone
//! else is refused with `PermissionDenied` before the factor is read or a
//! change is counted.

use std::borrow::Cow;

use domain::{OrgId, UserId};

use super::OtpFactors;
use crate::authenticate::Principal;
use crate::error::ApplicationError;
use crate::policy::Standing;

/// Who a call admits besides administrators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callers {
    /// The user themself, or an administrator (the v2 user service calls).
    SelfOrAdmin,
    /// Administrators only (the v1 management calls).
    AdminOnly,
}

/// The user whose factor a call acts on, once the caller is authorized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    /// The factor's owner.
    pub(super) user: UserId,
    /// The factor's resource owner (the user's organisation), when known:
    /// the token's org claim for the user's own calls, else the one the
    /// user's events recorded.
    pub(super) owner: Option<OrgId>,
    /// The otpauth URL's account: the login name for the user's own calls,
    /// the user id when an administrator acts (the token names only them).
    pub(super) account: String,
}

impl Target {
    /// The signed-in user's own factor (the "me" calls).
    pub(super) fn own(principal: &Principal) -> Self {
        Self {
            user: principal.user_id.clone(),
            owner: principal.org_id.clone(),
            account: principal.account().to_owned(),
        }
    }
}

impl OtpFactors {
    /// Authorizes `caller` to act on `user_id`'s factor (`request` names the
    /// request message in a bad id's error). An organisation administrator
    /// needs the factor's resource owner to be known and to be their own
    /// organisation: a user this service has never seen belongs to no one
    /// yet, so only the user or an instance administrator may act on them.
    ///
    /// # Errors
    /// `InvalidRequest` for a bad user id; `PermissionDenied` for a caller
    /// without standing (before anything is read) or an organisation
    /// administrator of another organisation (after reading the owner,
    /// before anything is counted or written); store failures.
    pub(super) async fn authorize(
        &self,
        caller: &Principal,
        user_id: &str,
        request: &str,
        callers: Callers,
    ) -> Result<Target, ApplicationError> {
        let user = UserId::parse(user_id).map_err(|error| {
            ApplicationError::InvalidRequest(Cow::Owned(format!(
                "invalid {request}.UserId: {error}"
            )))
        })?;
        let standing =
            self.settings
                .admins
                .standing(caller, &user, callers == Callers::SelfOrAdmin);
        let account = user.as_str().to_owned();
        match standing {
            Standing::Own => Ok(Target::own(caller)),
            Standing::InstanceAdmin => {
                let owner = self.store.resource_owner(&user).await?;
                Ok(Target {
                    user,
                    owner,
                    account,
                })
            }
            Standing::OrgAdmin(org) => {
                let owner = self.store.resource_owner(&user).await?;
                if owner.as_ref() == Some(&org) {
                    Ok(Target {
                        user,
                        owner,
                        account,
                    })
                } else {
                    tracing::info!(
                        caller = %caller.user_id,
                        user_id = %user,
                        caller_org = %org,
                        "administrator of another organisation refused"
                    );
                    Err(ApplicationError::PermissionDenied)
                }
            }
            Standing::None => {
                tracing::info!(
                    caller = %caller.user_id,
                    user_id = %user,
                    "caller without standing towards the user refused"
                );
                Err(ApplicationError::PermissionDenied)
            }
        }
    }
}
