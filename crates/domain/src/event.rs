//! What happened to a user's factors: the per-user event stream.

use chrono::{DateTime, Utc};

/// The kinds of change appended to a user's event stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// An OTP factor was added (NOT_READY), replacing any pending one.
    OtpAdded,
    /// The pending OTP factor was verified and is READY.
    OtpVerified,
    /// The OTP factor was removed.
    OtpRemoved,
    /// A trusted caller's login check accepted a code.
    CheckSucceeded,
    /// A trusted caller's login check refused a code (wrong or replayed).
    CheckFailed,
    /// Too many wrong codes in a row: the user's code checks are locked.
    Locked,
    /// A login check came while the user was locked or disabled: refused
    /// unchecked, recorded without extending the lock.
    CheckRefusedLocked,
    /// An administrator or the bulk import stored a secret imported from
    /// another system (READY, or NOT_READY awaiting the first code).
    OtpImported,
    /// A new set of recovery codes was generated, replacing any unused ones.
    RecoveryCodesGenerated,
    /// A trusted caller's login check redeemed a recovery code (it is gone).
    RecoveryCodeRedeemed,
    /// A trusted caller's login check refused a recovery code (counts towards
    /// the same attempt limit as OTP codes).
    RecoveryCodeFailed,
    /// The unused recovery codes were removed (by a call, or with the OTP
    /// factor they backed up).
    RecoveryCodesRemoved,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [Self; 12] = [
        Self::OtpAdded,
        Self::OtpVerified,
        Self::OtpRemoved,
        Self::CheckSucceeded,
        Self::CheckFailed,
        Self::Locked,
        Self::CheckRefusedLocked,
        Self::OtpImported,
        Self::RecoveryCodesGenerated,
        Self::RecoveryCodeRedeemed,
        Self::RecoveryCodeFailed,
        Self::RecoveryCodesRemoved,
    ];

    /// The stable name stored with the event and written to the audit log.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::OtpAdded => "otp.added",
            Self::OtpVerified => "otp.verified",
            Self::OtpRemoved => "otp.removed",
            Self::CheckSucceeded => "otp.check.succeeded",
            Self::CheckFailed => "otp.check.failed",
            Self::Locked => "otp.locked",
            Self::CheckRefusedLocked => "otp.check.refused_locked",
            Self::OtpImported => "otp.imported",
            Self::RecoveryCodesGenerated => "recovery_codes.generated",
            Self::RecoveryCodeRedeemed => "recovery_codes.redeemed",
            Self::RecoveryCodeFailed => "recovery_codes.check.failed",
            Self::RecoveryCodesRemoved => "recovery_codes.removed",
        }
    }

    /// Parses a stored name back.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// An appended event: its number in the user's stream and its time. This is
/// what the contract answers as `details.sequence` / `details.changeDate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FactorEvent {
    /// What happened.
    pub kind: EventKind,
    /// 1, 2, 3, ... per user, without gaps.
    pub sequence: u64,
    /// When it happened.
    pub at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::from_name(kind.as_str()), Some(kind));
        }
        assert_eq!(EventKind::from_name("otp.unknown"), None);
    }
}
