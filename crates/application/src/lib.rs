//! The use cases of the OTP factor (add, verify, remove, list, the trusted
//! login check, key rotation), the ports they drive, and the one error
//! vocabulary every adapter renders.

pub mod authenticate;
pub mod error;
pub mod policy;
pub mod ports;
pub mod rate_limit;
pub mod telemetry;
pub mod use_cases;

#[cfg(feature = "testing")]
pub mod testing;

pub use authenticate::{Authenticator, Principal};
pub use error::{ApplicationError, StatusCode, StoreError};
pub use policy::{AdminPolicy, CallerAllowlist, RecentAuthPolicy, Standing};
pub use ports::{
    Change, ChangeContext, CipherError, Clock, Committed, Current, Decide, FactorStore,
    FactorWrite, NotReady, OpenedSecret, Readiness, RecoveryCodeHasher, RecoveryWrite, Reseal,
    SealBinding, SecretCipher, SecretSource, SecretStore, StoredSecret, TokenError, TokenVerifier,
};
pub use use_cases::{
    AddedOtp, BULK_IMPORT_ACTOR, BulkImported, Callers, FactorList, GeneratedCodes, ImportOtp,
    KeyRotation, ListedFactor, ObjectDetails, OtpFactors, RecoverySettings, Redeemed,
    RotationReport, TotpSettings,
};
