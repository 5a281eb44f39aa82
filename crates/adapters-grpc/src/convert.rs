//! From the use cases' answers to the generated messages.

use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;

use application::{AddedOtp, ListedFactor, ObjectDetails};

use crate::proto::zitadel::auth::v1::{
    AddMyAuthFactorOtpResponse, ListMyAuthFactorsResponse, VerifyMyAuthFactorOtpRequest,
};
use crate::proto::zitadel::user::v1::{AuthFactor, AuthFactorOtp, AuthFactorState, auth_factor};
use crate::proto::zitadel::user::v2::{RegisterTotpResponse, VerifyTotpRegistrationRequest};
use crate::proto::zitadel::v1;

/// A `google.protobuf.Timestamp` of a time (nanoseconds kept; a leap second's
/// are capped at the last valid nanosecond).
pub(crate) fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    let nanos = at.timestamp_subsec_nanos().min(999_999_999);
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(nanos).unwrap_or(999_999_999),
    }
}

/// `zitadel.v1.ObjectDetails`; `creation_date` only where the use case gives one.
pub(crate) fn details(details: ObjectDetails) -> v1::ObjectDetails {
    v1::ObjectDetails {
        sequence: details.sequence,
        creation_date: details.creation_date.map(timestamp),
        change_date: Some(timestamp(details.change_date)),
        resource_owner: details
            .resource_owner
            .map(|org| org.as_str().to_owned())
            .unwrap_or_default(),
    }
}

/// `AddMyAuthFactorOTPResponse`: the only place the secret leaves the service.
pub(crate) fn added(added: AddedOtp) -> AddMyAuthFactorOtpResponse {
    AddMyAuthFactorOtpResponse {
        url: added.url.expose_secret().to_owned(),
        secret: added.secret.expose_secret().to_owned(),
        details: Some(details(added.details)),
    }
}

/// `zitadel.user.v2.RegisterTOTPResponse`: the secret, once.
pub(crate) fn registered(added: AddedOtp) -> RegisterTotpResponse {
    RegisterTotpResponse {
        details: Some(crate::users::v2_details(added.details)),
        uri: added.url.expose_secret().to_owned(),
        secret: added.secret.expose_secret().to_owned(),
    }
}

/// `ListMyAuthFactorsResponse`: each READY factor as `AuthFactor{READY, otp{}}`.
pub(crate) fn listed(factors: Vec<ListedFactor>) -> ListMyAuthFactorsResponse {
    let result = factors
        .into_iter()
        .map(|ListedFactor::Otp| AuthFactor {
            state: AuthFactorState::Ready.into(),
            r#type: Some(auth_factor::Type::Otp(AuthFactorOtp {})),
        })
        .collect();
    ListMyAuthFactorsResponse { result }
}

// The secret and the code never reach a log through Debug.

impl std::fmt::Debug for AddMyAuthFactorOtpResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AddMyAuthFactorOtpResponse")
            .field("url", &"[REDACTED]")
            .field("secret", &"[REDACTED]")
            .field("details", &self.details)
            .finish()
    }
}

impl std::fmt::Debug for RegisterTotpResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisterTotpResponse")
            .field("details", &self.details)
            .field("uri", &"[REDACTED]")
            .field("secret", &"[REDACTED]")
            .finish()
    }
}

impl std::fmt::Debug for VerifyTotpRegistrationRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyTotpRegistrationRequest")
            .field("user_id", &self.user_id)
            .field("code", &"[REDACTED]")
            .finish()
    }
}

impl std::fmt::Debug for VerifyMyAuthFactorOtpRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyMyAuthFactorOtpRequest")
            .field("code", &"[REDACTED]")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn timestamps_keep_seconds_and_nanos() {
        let at = Utc.timestamp_opt(1_742_554_287, 198_123_000).unwrap();
        assert_eq!(
            timestamp(at),
            prost_types::Timestamp {
                seconds: 1_742_554_287,
                nanos: 198_123_000
            }
        );
    }

    #[test]
    fn details_leave_creation_date_unset_unless_given() {
        let at = Utc.timestamp_opt(1_742_554_287, 0).unwrap();
        let plain = ObjectDetails {
            sequence: 2,
            creation_date: None,
            change_date: at,
            resource_owner: Some(domain_org("org-1")),
        };
        let converted = details(plain.clone());
        assert_eq!(converted.sequence, 2);
        assert_eq!(converted.creation_date, None);
        assert_eq!(converted.change_date, Some(timestamp(at)));
        assert_eq!(converted.resource_owner, "org-1");

        let with_creation = details(ObjectDetails {
            creation_date: Some(at),
            resource_owner: None,
            ..plain
        });
        assert_eq!(with_creation.creation_date, Some(timestamp(at)));
        assert_eq!(with_creation.resource_owner, "");
    }

    #[test]
    fn secrets_and_codes_stay_out_of_debug() {
        let response = AddMyAuthFactorOtpResponse {
            url: "otpauth://totp/x?secret=ABC".into(),
            secret: "ABCDEF".into(),
            details: None,
        };
        let request = VerifyMyAuthFactorOtpRequest {
            code: "123456".into(),
        };
        let printed = format!("{response:?} {request:?}");
        assert!(!printed.contains("ABC"), "{printed}");
        assert!(!printed.contains("123456"), "{printed}");
    }

    #[test]
    fn listed_factors_are_ready_otp() {
        let list = listed(vec![ListedFactor::Otp]);
        assert_eq!(list.result.len(), 1);
        assert_eq!(list.result[0].state(), AuthFactorState::Ready);
        assert_eq!(
            list.result[0].r#type,
            Some(auth_factor::Type::Otp(AuthFactorOtp {}))
        );
        assert!(listed(vec![]).result.is_empty());
    }

    fn domain_org(id: &str) -> domain::OrgId {
        domain::OrgId::parse(id).unwrap()
    }
}
