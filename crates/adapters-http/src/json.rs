//! Proto3 JSON of the contract's messages, as grpc-gateway emits them:
//! lowerCamelCase keys, uint64 as strings, RFC 3339 UTC timestamps with 0, 3,
//! 6 or 9 fractional digits, enums by name, unset fields left out. Each type
//! also derives its schema for the OpenAPI document (`crate::openapi`),
//! named by its proto message; the `#[schema]` attributes say what serde
//! alone does not show (a `uint64` is a decimal string, a timestamp is a
//! `date-time`, a field left out is never `null`).

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use application::{AddedOtp, FactorList, ListedFactor, ObjectDetails};

/// Requests without fields (Add, Remove, List): any JSON object is accepted.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = otp::EmptyRequest)]
pub(crate) struct EmptyRequest {}

/// `VerifyMyAuthFactorOTPRequest`, and `otp.v1.CheckOTPRequest` (whose
/// `user_id` is in the path).
#[derive(Default, Deserialize, ToSchema)]
#[schema(as = otp::VerifyRequest)]
pub(crate) struct VerifyRequest {
    /// `null` and absent both mean the empty string, as in proto3 JSON.
    #[serde(default)]
    #[schema(example = "492039")]
    pub(crate) code: Option<String>,
}

/// Shows whether a code came and how long it is, never the code.
impl fmt::Debug for VerifyRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = f.debug_struct("VerifyRequest");
        match &self.code {
            Some(code) => shown.field("code", &format_args!("Some(<{} chars>)", code.len())),
            None => shown.field("code", &None::<()>),
        };
        shown.finish()
    }
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// `zitadel.v1.ObjectDetails`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = zitadel::v1::ObjectDetails)]
pub(crate) struct Details {
    /// `uint64`, as a decimal string.
    #[schema(pattern = "^[0-9]+$", example = "2")]
    sequence: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, format = DateTime, nullable = false)]
    creation_date: Option<String>,
    #[schema(format = DateTime, example = "2025-03-21T10:51:27.198Z")]
    change_date: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, nullable = false)]
    resource_owner: Option<String>,
}

impl From<ObjectDetails> for Details {
    fn from(details: ObjectDetails) -> Self {
        Self {
            sequence: details.sequence.to_string(),
            creation_date: details.creation_date.map(timestamp),
            change_date: timestamp(details.change_date),
            resource_owner: details.resource_owner.map(|org| org.as_str().to_owned()),
        }
    }
}

/// `AddMyAuthFactorOTPResponse`: the only place the secret leaves the service.
#[derive(Serialize, ToSchema)]
#[schema(as = zitadel::auth::v1::AddMyAuthFactorOTPResponse)]
pub(crate) struct AddResponse {
    /// The `otpauth://totp/...` key URL.
    url: String,
    /// The key, base32 without padding.
    secret: String,
    details: Details,
}

/// The details only: the URL and the secret both carry the secret.
impl fmt::Debug for AddResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AddResponse")
            .field("url", &"<redacted>")
            .field("secret", &"<redacted>")
            .field("details", &self.details)
            .finish()
    }
}

impl From<AddedOtp> for AddResponse {
    fn from(added: AddedOtp) -> Self {
        Self {
            url: added.url.expose_secret().to_owned(),
            secret: added.secret.expose_secret().to_owned(),
            details: added.details.into(),
        }
    }
}

/// `VerifyMyAuthFactorOTPResponse` and `RemoveMyAuthFactorOTPResponse`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = zitadel::auth::v1::DetailsResponse)]
pub(crate) struct DetailsResponse {
    details: Details,
}

impl From<ObjectDetails> for DetailsResponse {
    fn from(details: ObjectDetails) -> Self {
        Self {
            details: details.into(),
        }
    }
}

/// `zitadel.object.v2.Details` (no `creationDate`: ZITADEL's user
/// service leaves it unset on these calls).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = zitadel::object::v2::Details)]
pub(crate) struct V2Details {
    /// `uint64`, as a decimal string.
    #[schema(pattern = "^[0-9]+$", example = "2")]
    sequence: String,
    #[schema(format = DateTime, example = "2025-03-21T10:51:27.198Z")]
    change_date: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, nullable = false)]
    resource_owner: Option<String>,
}

impl From<ObjectDetails> for V2Details {
    fn from(details: ObjectDetails) -> Self {
        Self {
            sequence: details.sequence.to_string(),
            change_date: timestamp(details.change_date),
            resource_owner: details.resource_owner.map(|org| org.as_str().to_owned()),
        }
    }
}

/// `zitadel.user.v2.RegisterTOTPResponse`.
#[derive(Serialize, ToSchema)]
#[schema(as = zitadel::user::v2::RegisterTOTPResponse)]
pub(crate) struct RegisterResponse {
    details: V2Details,
    /// The `otpauth://totp/...` key URL.
    uri: String,
    /// The key, base32 without padding.
    secret: String,
}

/// Like [`AddResponse`]'s: the URI and the secret both carry the secret.
impl fmt::Debug for RegisterResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisterResponse")
            .field("details", &self.details)
            .field("uri", &"<redacted>")
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl From<AddedOtp> for RegisterResponse {
    fn from(added: AddedOtp) -> Self {
        Self {
            details: added.details.into(),
            uri: added.url.expose_secret().to_owned(),
            secret: added.secret.expose_secret().to_owned(),
        }
    }
}

/// `VerifyTOTPRegistrationResponse` and `RemoveTOTPResponse`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = zitadel::user::v2::DetailsResponse)]
pub(crate) struct V2DetailsResponse {
    details: V2Details,
}

impl From<ObjectDetails> for V2DetailsResponse {
    fn from(details: ObjectDetails) -> Self {
        Self {
            details: details.into(),
        }
    }
}

/// `zitadel.object.v2.ListDetails`: zero `totalResult` left out, as proto3
/// JSON does; `processedSequence` is never set (no projection here).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = zitadel::object::v2::ListDetails)]
struct ListDetails {
    /// `uint64`, as a decimal string.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, pattern = "^[0-9]+$", nullable = false)]
    total_result: Option<String>,
    #[schema(format = DateTime)]
    timestamp: String,
}

/// `zitadel.user.v2.ListAuthenticationMethodTypesResponse`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = zitadel::user::v2::ListAuthenticationMethodTypesResponse)]
pub(crate) struct MethodTypesResponse {
    details: ListDetails,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    auth_method_types: Vec<MethodType>,
    /// otp-service's addition: how many unused recovery codes the user has
    /// (`uint32`; left out when none).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    recovery_codes_remaining: Option<u32>,
}

/// `zitadel.user.v2.AuthenticationMethodType`: the one this service has.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[schema(as = zitadel::user::v2::AuthenticationMethodType)]
enum MethodType {
    #[serde(rename = "AUTHENTICATION_METHOD_TYPE_TOTP")]
    Totp,
    /// Unused recovery codes exist.
    #[serde(rename = "AUTHENTICATION_METHOD_TYPE_RECOVERY_CODE")]
    RecoveryCode,
}

impl From<FactorList> for MethodTypesResponse {
    fn from(list: FactorList) -> Self {
        let auth_method_types: Vec<MethodType> = list
            .factors
            .iter()
            .map(|ListedFactor::Otp| MethodType::Totp)
            .chain((list.recovery_codes > 0).then_some(MethodType::RecoveryCode))
            .collect();
        Self {
            details: ListDetails {
                total_result: (!auth_method_types.is_empty())
                    .then(|| auth_method_types.len().to_string()),
                timestamp: timestamp(list.read_at),
            },
            auth_method_types,
            recovery_codes_remaining: (list.recovery_codes > 0)
                .then(|| u32::try_from(list.recovery_codes).unwrap_or(u32::MAX)),
        }
    }
}

/// `zitadel.user.v1.AuthFactor` with the `otp` member of its oneof.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = zitadel::user::v1::AuthFactor)]
struct AuthFactor {
    state: FactorState,
    otp: Empty,
}

/// `zitadel.user.v1.AuthFactorState`: a listed factor is always ready.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[schema(as = zitadel::user::v1::AuthFactorState)]
enum FactorState {
    #[serde(rename = "AUTH_FACTOR_STATE_READY")]
    Ready,
}

/// `zitadel.user.v1.AuthFactorOTP`: no fields.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = zitadel::user::v1::AuthFactorOTP)]
struct Empty {}

/// `ListMyAuthFactorsResponse`. An empty list leaves `result` out.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = zitadel::user::v1::ListAuthFactorsResponse)]
pub(crate) struct ListResponse {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    result: Vec<AuthFactor>,
}

impl From<Vec<ListedFactor>> for ListResponse {
    fn from(factors: Vec<ListedFactor>) -> Self {
        let result = factors
            .into_iter()
            .map(|ListedFactor::Otp| AuthFactor {
                state: FactorState::Ready,
                otp: Empty {},
            })
            .collect();
        Self { result }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn timestamps_use_zero_three_six_or_nine_digits() {
        let at = |nanos| Utc.timestamp_opt(1_742_554_287, nanos).unwrap();
        assert_eq!(timestamp(at(198_000_000)), "2025-03-21T10:51:27.198Z");
        assert_eq!(timestamp(at(0)), "2025-03-21T10:51:27Z");
        assert_eq!(timestamp(at(198_123_000)), "2025-03-21T10:51:27.198123Z");
    }

    #[test]
    fn debug_shows_neither_the_code_nor_the_secret() {
        let request: VerifyRequest = serde_json::from_str(r#"{"code":"492039"}"#).unwrap();
        let shown = format!("{request:?}");
        assert_eq!(shown, r#"VerifyRequest { code: Some(<6 chars>) }"#);

        let response = AddResponse {
            url: "otpauth://totp/otp:alice?secret=JBSWY3DPEHPK3PXP".into(),
            secret: "JBSWY3DPEHPK3PXP".into(),
            details: Details {
                sequence: "1".into(),
                creation_date: None,
                change_date: "2025-03-21T10:51:27Z".into(),
                resource_owner: None,
            },
        };
        let shown = format!("{response:?}");
        assert!(!shown.contains("JBSWY3DP"), "{shown}");
        assert!(shown.contains("2025-03-21T10:51:27Z"), "{shown}");
        // The wire still carries them.
        assert!(
            serde_json::to_string(&response)
                .unwrap()
                .contains("JBSWY3DP")
        );

        let registered = RegisterResponse {
            details: V2Details {
                sequence: "1".into(),
                change_date: "2025-03-21T10:51:27Z".into(),
                resource_owner: None,
            },
            uri: "otpauth://totp/otp:alice?secret=JBSWY3DPEHPK3PXP".into(),
            secret: "JBSWY3DPEHPK3PXP".into(),
        };
        let shown = format!("{registered:?}");
        assert!(!shown.contains("JBSWY3DP"), "{shown}");
        assert!(shown.contains("2025-03-21T10:51:27Z"), "{shown}");
    }

    #[test]
    fn list_json_matches_the_contract() {
        let json = serde_json::to_string(&ListResponse::from(vec![ListedFactor::Otp])).unwrap();
        assert_eq!(
            json,
            r#"{"result":[{"state":"AUTH_FACTOR_STATE_READY","otp":{}}]}"#
        );
        assert_eq!(
            serde_json::to_string(&ListResponse::from(vec![])).unwrap(),
            "{}"
        );
    }
}
