//! Rows <-> domain values. Writing never fails; reading checks every column
//! again, because a row is only as trustworthy as whoever wrote it last: a
//! row that is not a valid factor is [`StoreError::Corrupt`], never a panic.

use std::fmt;

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::{AsChangeset, Insertable, Queryable, Selectable};

use application::StoreError;
use domain::{FactorState, OtpFactor, SealedSecret, TimeStep, TotpAlgorithm, TotpParams, UserId};

use crate::schema::otp_factors;
use crate::statements::{FactorColumns, FactorValues};

const NOT_READY: &str = "not_ready";
const READY: &str = "ready";

/// A row of `otp_factors`. As a changeset it sets every column but the key.
#[derive(Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = otp_factors, primary_key(user_id), check_for_backend(Pg))]
pub(crate) struct FactorRow {
    pub user_id: String,
    pub state: String,
    pub key_id: String,
    pub sealed_secret: Vec<u8>,
    pub algorithm: String,
    pub digits: i16,
    pub period: i32,
    pub skew: i16,
    pub created_at: DateTime<Utc>,
    pub changed_at: DateTime<Utc>,
    pub last_used_step: Option<i64>,
}

impl FactorRow {
    /// The row that stores `factor` for `user`.
    pub(crate) fn new(user: &UserId, factor: OtpFactor) -> Self {
        let params = factor.params();
        let (created_at, changed_at, last_used_step) = (
            factor.created_at(),
            factor.changed_at(),
            factor.last_used_step(),
        );
        let state = state_name(factor.state()).to_owned();
        let SealedSecret { key_id, sealed } = factor.into_secret();
        Self {
            user_id: user.as_str().to_owned(),
            state,
            key_id,
            sealed_secret: sealed,
            algorithm: params.algorithm().as_str().to_owned(),
            digits: i16::from(params.digits()),
            // Periods are at most 300 s (TotpParams checks), so this never saturates.
            period: i32::try_from(params.period()).unwrap_or(i32::MAX),
            skew: i16::from(params.skew()),
            created_at,
            changed_at,
            // Steps are Unix seconds / period: far below i64::MAX.
            last_used_step: last_used_step.map(|step| i64::try_from(step.0).unwrap_or(i64::MAX)),
        }
    }

    /// The values the change statement binds for this row.
    pub(crate) fn into_values(self) -> FactorValues {
        FactorValues {
            state: Some(self.state),
            key_id: Some(self.key_id),
            sealed_secret: Some(self.sealed_secret),
            algorithm: Some(self.algorithm),
            digits: Some(self.digits),
            period: Some(self.period),
            skew: Some(self.skew),
            created_at: Some(self.created_at),
            changed_at: Some(self.changed_at),
            last_used_step: self.last_used_step,
        }
    }

    /// The factor of `user` in the columns of the state read: none when the
    /// user has no factor (the left join found no row).
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when some columns are null and others not, or
    /// as [`FactorRow::into_factor`].
    pub(crate) fn from_columns(
        user: &UserId,
        columns: FactorColumns,
    ) -> Result<Option<OtpFactor>, StoreError> {
        let (
            state,
            key_id,
            sealed_secret,
            algorithm,
            digits,
            period,
            skew,
            created_at,
            changed_at,
            last_used_step,
        ) = columns;
        let Some(state) = state else {
            return Ok(None);
        };
        let missing = || StoreError::Corrupt(format!("otp_factors row of user {user:?} has nulls"));
        Self {
            user_id: user.as_str().to_owned(),
            state,
            key_id: key_id.ok_or_else(missing)?,
            sealed_secret: sealed_secret.ok_or_else(missing)?,
            algorithm: algorithm.ok_or_else(missing)?,
            digits: digits.ok_or_else(missing)?,
            period: period.ok_or_else(missing)?,
            skew: skew.ok_or_else(missing)?,
            created_at: created_at.ok_or_else(missing)?,
            changed_at: changed_at.ok_or_else(missing)?,
            last_used_step,
        }
        .into_factor()
        .map(Some)
    }

    /// The factor this row stores.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when a column holds something no valid factor
    /// has: an unknown state or algorithm, or out-of-range parameters.
    pub(crate) fn into_factor(self) -> Result<OtpFactor, StoreError> {
        let corrupt = |what: String| {
            StoreError::Corrupt(format!(
                "otp_factors row of user {:?}: {what}",
                self.user_id
            ))
        };
        let state = match self.state.as_str() {
            NOT_READY => FactorState::NotReady,
            READY => FactorState::Ready,
            other => return Err(corrupt(format!("unknown state {other:?}"))),
        };
        let algorithm = match self.algorithm.as_str() {
            "SHA1" => TotpAlgorithm::Sha1,
            "SHA256" => TotpAlgorithm::Sha256,
            "SHA512" => TotpAlgorithm::Sha512,
            other => return Err(corrupt(format!("unknown algorithm {other:?}"))),
        };
        let digits = u8::try_from(self.digits)
            .map_err(|_| corrupt(format!("digits {} out of range", self.digits)))?;
        let period = u32::try_from(self.period)
            .map_err(|_| corrupt(format!("period {} out of range", self.period)))?;
        let skew = u8::try_from(self.skew)
            .map_err(|_| corrupt(format!("skew {} out of range", self.skew)))?;
        let params = TotpParams::new(algorithm, digits, period, skew)
            .map_err(|error| corrupt(error.to_string()))?;
        let last_used_step = self
            .last_used_step
            .map(|step| {
                u64::try_from(step)
                    .map(TimeStep)
                    .map_err(|_| corrupt(format!("last used step {step} out of range")))
            })
            .transpose()?;
        Ok(OtpFactor::restore(
            state,
            SealedSecret {
                key_id: self.key_id,
                sealed: self.sealed_secret,
            },
            params,
            self.created_at,
            self.changed_at,
            last_used_step,
        ))
    }
}

impl fmt::Debug for FactorRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FactorRow")
            .field("user_id", &self.user_id)
            .field("state", &self.state)
            .field("key_id", &self.key_id)
            .field(
                "sealed_secret",
                &format_args!("<{} bytes>", self.sealed_secret.len()),
            )
            .field("algorithm", &self.algorithm)
            .field("digits", &self.digits)
            .field("period", &self.period)
            .field("skew", &self.skew)
            .field("created_at", &self.created_at)
            .field("changed_at", &self.changed_at)
            .field("last_used_step", &self.last_used_step)
            .finish()
    }
}

pub(crate) const fn state_name(state: FactorState) -> &'static str {
    match state {
        FactorState::NotReady => NOT_READY,
        FactorState::Ready => READY,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn factor() -> OtpFactor {
        let at = DateTime::from_timestamp(1_700_000_000, 123_456_000).unwrap();
        OtpFactor::restore(
            FactorState::Ready,
            SealedSecret {
                key_id: "k1".into(),
                sealed: vec![7; 48],
            },
            TotpParams::new(TotpAlgorithm::Sha512, 8, 45, 2).unwrap(),
            at,
            at,
            Some(TimeStep(56_666_666)),
        )
    }

    #[test]
    fn factor_round_trips_through_its_row() {
        let user = UserId::parse("u1").unwrap();
        let row = FactorRow::new(&user, factor());
        assert_eq!(
            (row.state.as_str(), row.algorithm.as_str()),
            ("ready", "SHA512")
        );
        assert_eq!(row.into_factor(), Ok(factor()));
    }

    #[test]
    fn unparseable_rows_are_corrupt() {
        let user = UserId::parse("u1").unwrap();
        let good = FactorRow::new(&user, factor());
        let cases = [
            FactorRow {
                state: "READY".into(),
                ..good.clone()
            },
            FactorRow {
                algorithm: "MD5".into(),
                ..good.clone()
            },
            FactorRow {
                digits: 7,
                ..good.clone()
            },
            FactorRow {
                digits: -6,
                ..good.clone()
            },
            FactorRow {
                period: 0,
                ..good.clone()
            },
            FactorRow {
                last_used_step: Some(-1),
                ..good.clone()
            },
            FactorRow { skew: 3, ..good },
        ];
        for row in cases {
            assert!(
                matches!(row.clone().into_factor(), Err(StoreError::Corrupt(_))),
                "{row:?}"
            );
        }
    }
}
