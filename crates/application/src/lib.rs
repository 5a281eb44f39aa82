//! The use cases of the OTP factor (add, verify, remove, list), the ports they
//! drive, and the one error vocabulary every adapter renders.

pub mod authenticate;
pub mod error;
pub mod ports;
pub mod use_cases;

#[cfg(feature = "testing")]
pub mod testing;

pub use authenticate::{Authenticator, Principal};
pub use error::{ApplicationError, StatusCode, StoreError};
pub use ports::{
    Change, ChangeContext, CipherError, Clock, Decide, FactorStore, Readiness, SecretCipher,
    SecretSource, TokenError, TokenVerifier,
};
pub use use_cases::{AddedOtp, ListedFactor, ObjectDetails, OtpFactors, TotpSettings};
