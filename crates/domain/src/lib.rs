//! The OTP factor domain: valid-by-construction values, TOTP math and the
//! factor's state machine. No I/O, no framework, no clock: time comes in as a
//! value from the caller.

pub mod event;
pub mod factor;
pub mod guard;
pub mod identity;
pub mod recovery;
pub mod totp;

pub use event::{EventKind, FactorEvent};
pub use factor::{FactorError, FactorState, OtpFactor, SealedSecret};
pub use guard::{AttemptPolicy, Attempts, Judgement, PolicyError, judge};
pub use identity::{IdentityError, LoginName, OrgId, UserId};
pub use recovery::{
    RecoveryCode, RecoveryCodes, RecoveryHash, RecoveryInputError, SubmittedRecoveryCode,
};
pub use totp::{
    CodeCheck, CodeLengthError, SubmittedCode, TimeStep, TotpAlgorithm, TotpKey, TotpParams,
    TotpParamsError, TotpSecret, otpauth_url,
};
