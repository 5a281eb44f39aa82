//! Reading the identity (user, organisation, login name, scopes, roles) from
//! a set of claims: a JWT's payload or an introspection answer.

use chrono::DateTime;
use serde_json::{Map, Value};

use application::{Principal, TokenError};
use domain::{LoginName, OrgId, UserId};

use crate::settings::ClaimNames;

/// A token refused for `reason` (logged, never shown to the client).
pub(crate) fn invalid(reason: impl Into<String>) -> TokenError {
    TokenError::Invalid(reason.into())
}

/// An optional string claim: absent or `null` is `None`, another type is an error.
pub(crate) fn string_claim<'a>(
    claims: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, TokenError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(value)) => Ok(Some(value)),
        Some(_) => Err(invalid(format!("claim {name} is not a string"))),
    }
}

/// The scopes of claim `name`: a space-separated string (RFC 6749 §3.3,
/// RFC 7662, RFC 9068) or an array of strings. Absent or `null` is none;
/// any other type is an error.
pub(crate) fn scope_claim(
    claims: &Map<String, Value>,
    name: &str,
) -> Result<Vec<String>, TokenError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(scopes)) => Ok(scopes
            .split(' ')
            .filter(|scope| !scope.is_empty())
            .map(str::to_owned)
            .collect()),
        Some(Value::Array(scopes)) => scopes
            .iter()
            .map(|scope| match scope {
                Value::String(scope) => Ok(scope.clone()),
                _ => Err(invalid(format!(
                    "claim {name} has an entry that is not a string"
                ))),
            })
            .collect(),
        Some(_) => Err(invalid(format!(
            "claim {name} is neither a string nor an array of strings"
        ))),
    }
}

/// The claim `name`: a top-level claim of that name, else (when the name
/// has dots) the value at that path of nested objects, e.g. Keycloak's
/// `realm_access.roles` or `resource_access.my-client.roles`.
fn claim_at<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(value) = claims.get(name) {
        return Some(value);
    }
    let mut parts = name.split('.');
    let mut value = claims.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

/// The roles of claim `name` (see [`claim_at`]): an object's keys
/// (ZITADEL's `{"role": {"orgId": "domain"}}`), an array of strings, or a
/// space-separated string. Absent or `null` is none; any other shape is an
/// error (a token must not be half understood).
pub(crate) fn roles_claim(
    claims: &Map<String, Value>,
    name: &str,
) -> Result<Vec<String>, TokenError> {
    match claim_at(claims, name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(roles)) => Ok(roles.keys().cloned().collect()),
        Some(Value::String(roles)) => Ok(roles
            .split(' ')
            .filter(|role| !role.is_empty())
            .map(str::to_owned)
            .collect()),
        Some(Value::Array(roles)) => roles
            .iter()
            .map(|role| match role {
                Value::String(role) => Ok(role.clone()),
                _ => Err(invalid(format!(
                    "claim {name} has an entry that is not a string"
                ))),
            })
            .collect(),
        Some(_) => Err(invalid(format!(
            "claim {name} is neither an object, a string nor an array of strings"
        ))),
    }
}

/// The principal the claims name. The login name comes from
/// `names.login_name`, else from `login_name_fallback` when given.
pub(crate) fn principal(
    claims: &Map<String, Value>,
    names: &ClaimNames,
    login_name_fallback: Option<&str>,
) -> Result<Principal, TokenError> {
    let user_id = string_claim(claims, &names.user_id)?
        .ok_or_else(|| invalid(format!("missing user id claim {}", names.user_id)))?;
    let user_id =
        UserId::parse(user_id).map_err(|e| invalid(format!("claim {}: {e}", names.user_id)))?;
    let org_id = string_claim(claims, &names.org_id)?
        .map(OrgId::parse)
        .transpose()
        .map_err(|e| invalid(format!("claim {}: {e}", names.org_id)))?;
    let mut login_claim = names.login_name.as_str();
    let mut login_name = string_claim(claims, login_claim)?;
    if let (None, Some(fallback)) = (login_name, login_name_fallback) {
        login_claim = fallback;
        login_name = string_claim(claims, fallback)?;
    }
    let login_name = login_name
        .map(LoginName::parse)
        .transpose()
        .map_err(|e| invalid(format!("claim {login_claim}: {e}")))?;
    let scopes = scope_claim(claims, &names.scope)?;
    let client_id = string_claim(claims, "client_id")?.map(str::to_owned);
    let authorized_party = string_claim(claims, "azp")?.map(str::to_owned);
    let auth_time = match claims.get("auth_time") {
        None | Some(Value::Null) => None,
        Some(Value::Number(secs)) => {
            #[allow(
                clippy::cast_possible_truncation,
                reason = "a NumericDate may have a fraction; whole seconds are enough"
            )]
            let whole = secs.as_i64().or_else(|| {
                secs.as_f64()
                    .filter(|secs| secs.is_finite() && secs.abs() < 1e12)
                    .map(|secs| secs as i64)
            });
            Some(
                whole
                    .and_then(|secs| DateTime::from_timestamp(secs, 0))
                    .ok_or_else(|| invalid("claim auth_time is out of range"))?,
            )
        }
        Some(_) => return Err(invalid("claim auth_time is not a number")),
    };
    // RFC 8176 / OIDC Core: an array of strings; a space-separated string is
    // accepted as well, as for `scope`.
    let amr = scope_claim(claims, "amr")?;
    let roles = roles_claim(claims, &names.roles)?;
    Ok(Principal {
        user_id,
        org_id,
        login_name,
        scopes,
        client_id,
        authorized_party,
        auth_time,
        amr,
        roles,
    })
}

/// The client a token was issued to, for `auth.allowed_clients`: `azp`, else
/// `client_id` (what an introspection answer carries).
pub(crate) fn authorized_party(principal: &Principal) -> Option<&str> {
    principal
        .authorized_party
        .as_deref()
        .or(principal.client_id.as_deref())
}

/// `auth.allowed_clients`: when the list is not empty, a token naming its
/// client (`azp`, else `client_id`) must name the audience or a listed client.
pub(crate) fn check_authorized_party(
    principal: &Principal,
    audience: &str,
    allowed: &[String],
) -> Result<(), TokenError> {
    match authorized_party(principal) {
        Some(party) if !allowed.is_empty() => {
            if party == audience || allowed.iter().any(|client| client == party) {
                Ok(())
            } else {
                Err(invalid(
                    "the token's authorized party (azp) is not an allowed client",
                ))
            }
        }
        _ => Ok(()),
    }
}

/// Whether claim `aud` (a string or an array of strings) contains `audience`.
pub(crate) fn audience_contains(claims: &Map<String, Value>, audience: &str) -> bool {
    match claims.get("aud") {
        Some(Value::String(aud)) => aud == audience,
        Some(Value::Array(auds)) => auds.iter().any(|aud| aud.as_str() == Some(audience)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    #[test]
    fn scopes_from_a_string_or_an_array() {
        let claims = map(json!({
            "s": "openid  profile urn:zitadel:iam:org:project:id:zitadel:aud",
            "a": ["openid", "email"],
            "n": null,
            "e": "",
        }));
        assert_eq!(
            scope_claim(&claims, "s").ok(),
            Some(vec![
                "openid".to_owned(),
                "profile".to_owned(),
                "urn:zitadel:iam:org:project:id:zitadel:aud".to_owned()
            ])
        );
        assert_eq!(
            scope_claim(&claims, "a").ok(),
            Some(vec!["openid".to_owned(), "email".to_owned()])
        );
        assert_eq!(scope_claim(&claims, "n").ok(), Some(Vec::new()));
        assert_eq!(scope_claim(&claims, "e").ok(), Some(Vec::new()));
        assert_eq!(scope_claim(&claims, "absent").ok(), Some(Vec::new()));
    }

    #[test]
    fn scopes_of_another_shape_are_invalid() {
        for bad in [json!(1), json!(true), json!({"a": 1}), json!(["a", 2])] {
            let claims = map(json!({ "scope": bad }));
            assert!(
                matches!(scope_claim(&claims, "scope"), Err(TokenError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn login_name_falls_back_only_when_absent() {
        let names = ClaimNames::default();
        let both = map(json!({"sub": "u", "preferred_username": "p", "username": "n"}));
        let only_fallback = map(json!({"sub": "u", "username": "n"}));
        let login = |claims: &Map<String, Value>, fallback| {
            principal(claims, &names, fallback)
                .ok()
                .and_then(|p| p.login_name)
                .map(|l| l.as_str().to_owned())
        };
        assert_eq!(login(&both, Some("username")).as_deref(), Some("p"));
        assert_eq!(
            login(&only_fallback, Some("username")).as_deref(),
            Some("n")
        );
        assert_eq!(login(&only_fallback, None), None);
    }

    #[test]
    fn client_sign_in_time_and_methods_are_read() {
        let names = ClaimNames::default();
        let claims = map(json!({"sub": "u", "client_id": "c", "azp": "a",
            "auth_time": 1_800_000_000, "amr": ["pwd", "mfa"]}));
        let p = principal(&claims, &names, None).unwrap();
        assert_eq!(p.client_id.as_deref(), Some("c"));
        assert_eq!(p.authorized_party.as_deref(), Some("a"));
        assert_eq!(p.auth_time.map(|t| t.timestamp()), Some(1_800_000_000));
        assert_eq!(p.amr, ["pwd", "mfa"]);
        assert_eq!(authorized_party(&p), Some("a"));
        for bad in [
            json!({"sub": "u", "auth_time": "yesterday"}),
            json!({"sub": "u", "amr": 3}),
            json!({"sub": "u", "azp": 1}),
            json!({"sub": "u", "auth_time": 1e300}),
        ] {
            assert!(principal(&map(bad.clone()), &names, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_authorized_party_must_be_the_audience_or_allowed_when_a_list_is_set() {
        let names = ClaimNames::default();
        let p =
            |azp: Value| principal(&map(json!({"sub": "u", "azp": azp})), &names, None).unwrap();
        let allowed = ["web-app".to_owned()];
        assert!(check_authorized_party(&p(json!("other")), "aud", &[]).is_ok());
        assert!(check_authorized_party(&p(json!("other")), "aud", &allowed).is_err());
        assert!(check_authorized_party(&p(json!("aud")), "aud", &allowed).is_ok());
        assert!(check_authorized_party(&p(json!("web-app")), "aud", &allowed).is_ok());
        assert!(check_authorized_party(&p(Value::Null), "aud", &allowed).is_ok());
        let client_only = principal(
            &map(json!({"sub": "u", "client_id": "other"})),
            &names,
            None,
        )
        .unwrap();
        assert!(check_authorized_party(&client_only, "aud", &allowed).is_err());
    }

    #[test]
    fn roles_from_zitadel_keycloak_or_a_list() {
        let claims = map(json!({
            "urn:zitadel:iam:org:project:roles": {
                "otp.admin": {"org-1": "acme.example"},
                "viewer": {"org-1": "acme.example"}
            },
            "realm_access": {"roles": ["otp.admin", "offline_access"]},
            "resource_access": {"otp-service": {"roles": ["otp.instance_admin"]}},
            "groups": "a b",
            "bad": 3,
            "bad_entry": ["x", 1],
        }));
        let mut zitadel = roles_claim(&claims, "urn:zitadel:iam:org:project:roles").unwrap();
        zitadel.sort();
        assert_eq!(zitadel, ["otp.admin", "viewer"]);
        assert_eq!(
            roles_claim(&claims, "realm_access.roles").unwrap(),
            ["otp.admin", "offline_access"]
        );
        assert_eq!(
            roles_claim(&claims, "resource_access.otp-service.roles").unwrap(),
            ["otp.instance_admin"]
        );
        assert_eq!(roles_claim(&claims, "groups").unwrap(), ["a", "b"]);
        assert!(roles_claim(&claims, "absent").unwrap().is_empty());
        assert!(
            roles_claim(&claims, "realm_access.nothing")
                .unwrap()
                .is_empty()
        );
        assert!(roles_claim(&claims, "bad").is_err());
        assert!(roles_claim(&claims, "bad_entry").is_err());
        let names = ClaimNames::default();
        let p = principal(&claims, &names, None);
        assert!(p.is_err(), "no sub");
        let mut with_sub = claims.clone();
        with_sub.insert("sub".into(), json!("u"));
        let p = principal(&with_sub, &names, None).unwrap();
        assert!(p.has_role("otp.admin") && !p.has_role("offline_access"));
    }

    #[test]
    fn audience_as_string_or_array() {
        assert!(audience_contains(&map(json!({"aud": "x"})), "x"));
        assert!(audience_contains(&map(json!({"aud": ["y", "x"]})), "x"));
        assert!(!audience_contains(&map(json!({"aud": ["y"]})), "x"));
        assert!(!audience_contains(&map(json!({"aud": 1})), "x"));
        assert!(!audience_contains(&map(json!({})), "x"));
    }
}
