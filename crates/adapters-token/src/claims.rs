//! Reading the identity (user, organisation, login name, scopes) from a set
//! of claims: a JWT's payload or an introspection answer.

use serde_json::{Map, Value};

use application::{Principal, TokenError};
use domain::{LoginName, OrgId, UserId};

use crate::settings::ClaimNames;

fn invalid(reason: impl Into<String>) -> TokenError {
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
    Ok(Principal {
        user_id,
        org_id,
        login_name,
        scopes,
    })
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
    fn audience_as_string_or_array() {
        assert!(audience_contains(&map(json!({"aud": "x"})), "x"));
        assert!(audience_contains(&map(json!({"aud": ["y", "x"]})), "x"));
        assert!(!audience_contains(&map(json!({"aud": ["y"]})), "x"));
        assert!(!audience_contains(&map(json!({"aud": 1})), "x"));
        assert!(!audience_contains(&map(json!({})), "x"));
    }
}
