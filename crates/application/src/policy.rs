//! Rules on the caller beyond a valid token: which clients may make the
//! trusted login check, how recent a user's sign-in must be for the calls
//! that change their second factor, and who administers other users' factors.

use chrono::{DateTime, TimeDelta, Utc};

use domain::{OrgId, UserId};

use crate::authenticate::Principal;
use crate::error::ApplicationError;

/// The calling clients trusted with the login check, matched against the
/// token's `client_id`, `azp` and user id (`sub`). Empty: nobody may check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallerAllowlist(Vec<String>);

impl CallerAllowlist {
    /// An allowlist of `clients`; blank entries are dropped.
    #[must_use]
    pub fn new(clients: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self(
            clients
                .into_iter()
                .map(Into::into)
                .map(|client: String| client.trim().to_owned())
                .filter(|client| !client.is_empty())
                .collect(),
        )
    }

    /// The listed clients.
    #[must_use]
    pub fn clients(&self) -> &[String] {
        &self.0
    }

    /// Whether the token's `client_id`, `azp` or user id is listed.
    #[must_use]
    pub fn allows(&self, caller: &Principal) -> bool {
        let names = [
            caller.client_id.as_deref(),
            caller.authorized_party.as_deref(),
            Some(caller.user_id.as_str()),
        ];
        names
            .into_iter()
            .flatten()
            .any(|name| self.0.iter().any(|client| client == name))
    }
}

/// How recent and how strong the user's sign-in must be for the calls that
/// replace or remove a second factor. Both parts off: no requirement (what
/// ZITADEL does).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecentAuthPolicy {
    /// The token's `auth_time` must be at most this old.
    pub max_age: Option<TimeDelta>,
    /// The token's `amr` must contain at least one of these (e.g. `mfa`).
    pub methods: Vec<String>,
}

impl RecentAuthPolicy {
    /// Whether anything is required at all.
    #[must_use]
    pub fn is_enabled(&self) -> bool {
        self.max_age.is_some() || !self.methods.is_empty()
    }

    /// Checks `principal`'s sign-in at `now`: with a maximum age, `auth_time`
    /// must be present and no older (a time ahead of `now` counts as now);
    /// with methods, `amr` must name one of them.
    ///
    /// # Errors
    /// [`ApplicationError::RecentAuthRequired`] when a requirement is not met.
    pub fn require(
        &self,
        principal: &Principal,
        now: DateTime<Utc>,
    ) -> Result<(), ApplicationError> {
        if let Some(max_age) = self.max_age {
            let fresh = principal
                .auth_time
                .is_some_and(|at| now.signed_duration_since(at) <= max_age);
            if !fresh {
                tracing::info!(
                    user_id = %principal.user_id,
                    auth_time = principal.auth_time.map(|at| at.timestamp()),
                    "sign-in too old (or no auth_time) for this call"
                );
                return Err(ApplicationError::RecentAuthRequired);
            }
        }
        if !self.methods.is_empty()
            && !principal
                .amr
                .iter()
                .any(|method| self.methods.iter().any(|wanted| wanted == method))
        {
            tracing::info!(
                user_id = %principal.user_id,
                amr = ?principal.amr,
                "sign-in without a required method (amr) for this call"
            );
            return Err(ApplicationError::RecentAuthRequired);
        }
        Ok(())
    }
}

/// Who administers other users' OTP factors: a token granting
/// `org_role` (or `org_scope`) administers the factors whose resource owner
/// is the token's own organisation; one granting `instance_role` administers
/// every factor. Each `None`: nobody holds that standing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminPolicy {
    /// The role of an administrator within their own organisation.
    pub org_role: Option<String>,
    /// The role of an administrator of every organisation.
    pub instance_role: Option<String>,
    /// A scope that counts as `org_role` (for providers without roles).
    pub org_scope: Option<String>,
}

impl Default for AdminPolicy {
    /// `otp.admin` within the own organisation, `otp.instance_admin`
    /// everywhere, no scope.
    fn default() -> Self {
        Self {
            org_role: Some("otp.admin".to_owned()),
            instance_role: Some("otp.instance_admin".to_owned()),
            org_scope: None,
        }
    }
}

/// What a caller may do to a user's factor, before the factor's resource
/// owner is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// The caller is the user.
    Own,
    /// The caller administers every organisation.
    InstanceAdmin,
    /// The caller administers this organisation (the token's org claim) only.
    OrgAdmin(OrgId),
    /// The caller may not act on the user.
    None,
}

impl AdminPolicy {
    /// The caller's standing towards `user`'s factor. `own_allowed: false`
    /// (the management calls) gives the user no standing of their own.
    #[must_use]
    pub fn standing(&self, caller: &Principal, user: &UserId, own_allowed: bool) -> Standing {
        if own_allowed && caller.user_id == *user {
            return Standing::Own;
        }
        if self
            .instance_role
            .as_deref()
            .is_some_and(|role| caller.has_role(role))
        {
            return Standing::InstanceAdmin;
        }
        let org_admin = self
            .org_role
            .as_deref()
            .is_some_and(|role| caller.has_role(role))
            || self
                .org_scope
                .as_deref()
                .is_some_and(|scope| caller.has_scope(scope));
        match (&caller.org_id, org_admin) {
            (Some(org), true) => Standing::OrgAdmin(org.clone()),
            _ => Standing::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal_named(user: &str) -> Principal {
        Principal::of(domain::UserId::parse(user).unwrap())
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn the_allowlist_matches_client_id_azp_or_sub_and_empty_allows_nobody() {
        let mut caller = principal_named("svc-user");
        caller.client_id = Some("login-app".into());
        caller.authorized_party = Some("login-azp".into());
        assert!(!CallerAllowlist::default().allows(&caller));
        assert!(!CallerAllowlist::new([" ", ""]).allows(&caller));
        assert!(CallerAllowlist::new(["login-app"]).allows(&caller));
        assert!(CallerAllowlist::new(["login-azp"]).allows(&caller));
        assert!(CallerAllowlist::new(["x", "svc-user"]).allows(&caller));
        assert!(!CallerAllowlist::new(["login", "LOGIN-APP"]).allows(&caller));
    }

    #[test]
    fn standing_is_own_then_instance_then_org_admin() {
        let policy = AdminPolicy {
            org_scope: Some("otp:admin".into()),
            ..AdminPolicy::default()
        };
        let target = UserId::parse("target").unwrap();
        let mut caller = principal_named("target");
        assert_eq!(policy.standing(&caller, &target, true), Standing::Own);
        assert_eq!(policy.standing(&caller, &target, false), Standing::None);
        caller = principal_named("admin");
        assert_eq!(policy.standing(&caller, &target, true), Standing::None);
        caller.roles = vec!["otp.admin".into()];
        assert_eq!(
            policy.standing(&caller, &target, true),
            Standing::None,
            "an org admin without an org claim administers nothing"
        );
        caller.org_id = Some(OrgId::parse("org-a").unwrap());
        assert_eq!(
            policy.standing(&caller, &target, false),
            Standing::OrgAdmin(OrgId::parse("org-a").unwrap())
        );
        caller.roles = Vec::new();
        caller.scopes = vec!["otp:admin".into()];
        assert!(matches!(
            policy.standing(&caller, &target, true),
            Standing::OrgAdmin(_)
        ));
        caller.roles = vec!["otp.instance_admin".into()];
        assert_eq!(
            policy.standing(&caller, &target, false),
            Standing::InstanceAdmin
        );
        let off = AdminPolicy {
            org_role: None,
            instance_role: None,
            org_scope: None,
        };
        assert_eq!(off.standing(&caller, &target, true), Standing::None);
    }

    #[test]
    fn recent_auth_needs_a_fresh_auth_time_and_a_listed_method() {
        let mut user = principal_named("u");
        let off = RecentAuthPolicy::default();
        assert!(!off.is_enabled());
        assert!(off.require(&user, at(0)).is_ok());

        let age = RecentAuthPolicy {
            max_age: Some(TimeDelta::minutes(5)),
            methods: Vec::new(),
        };
        assert_eq!(
            age.require(&user, at(0)),
            Err(ApplicationError::RecentAuthRequired),
            "no auth_time"
        );
        user.auth_time = Some(at(-300));
        assert!(age.require(&user, at(0)).is_ok());
        assert!(age.require(&user, at(1)).is_err());
        user.auth_time = Some(at(60));
        assert!(
            age.require(&user, at(0)).is_ok(),
            "ahead of now counts as now"
        );

        let mfa = RecentAuthPolicy {
            max_age: None,
            methods: vec!["mfa".into(), "otp".into()],
        };
        assert!(mfa.require(&user, at(0)).is_err());
        user.amr = vec!["pwd".into()];
        assert!(mfa.require(&user, at(0)).is_err());
        user.amr = vec!["pwd".into(), "otp".into()];
        assert!(mfa.require(&user, at(0)).is_ok());

        let both = RecentAuthPolicy {
            max_age: Some(TimeDelta::minutes(5)),
            methods: vec!["mfa".into()],
        };
        user.amr = vec!["mfa".into()];
        assert!(both.require(&user, at(0)).is_ok());
        assert!(both.require(&user, at(3600)).is_err());
    }
}
