//! Who a factor belongs to: the user, their organisation and their login name.

use std::fmt;

/// Longest identifier or login name accepted from a token (in bytes).
const MAX_LEN: usize = 200;

/// Why an identity value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The value is empty.
    #[error("{0} is empty")]
    Empty(&'static str),
    /// The value is longer than 200 bytes.
    #[error("{0} is longer than {MAX_LEN} bytes")]
    TooLong(&'static str),
    /// The value contains a control character.
    #[error("{0} contains a control character")]
    ControlCharacter(&'static str),
}

fn check(what: &'static str, value: &str) -> Result<(), IdentityError> {
    if value.is_empty() {
        return Err(IdentityError::Empty(what));
    }
    if value.len() > MAX_LEN {
        return Err(IdentityError::TooLong(what));
    }
    if value.chars().any(char::is_control) {
        return Err(IdentityError::ControlCharacter(what));
    }
    Ok(())
}

macro_rules! identity_value {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Parses the value: 1 to 200 bytes, no control characters.
            ///
            /// # Errors
            /// [`IdentityError`] when the value breaks one of those rules.
            pub fn parse(value: impl Into<String>) -> Result<Self, IdentityError> {
                let value = value.into();
                check($what, &value)?;
                Ok(Self(value))
            }

            /// The value as text.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

identity_value!(
    /// The user's id (ZITADEL: the token's `sub`). A factor is keyed by it.
    UserId,
    "user id"
);
identity_value!(
    /// The user's organisation id, answered as `details.resourceOwner`.
    OrgId,
    "organisation id"
);
identity_value!(
    /// The user's login name, the account part of the otpauth URL.
    LoginName,
    "login name"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_ids() {
        assert_eq!(
            UserId::parse("69629023906488334").unwrap().as_str(),
            "69629023906488334"
        );
        assert!(LoginName::parse("gigi@acme.zitadel.cloud").is_ok());
    }

    #[test]
    fn refuses_empty_long_and_control_values() {
        assert_eq!(UserId::parse(""), Err(IdentityError::Empty("user id")));
        assert_eq!(
            OrgId::parse("x".repeat(201)),
            Err(IdentityError::TooLong("organisation id"))
        );
        assert!(OrgId::parse("x".repeat(200)).is_ok());
        assert_eq!(
            LoginName::parse("a\nb"),
            Err(IdentityError::ControlCharacter("login name"))
        );
    }
}
