//! The tables of `migrations/`, written by hand for diesel's query builder.
//! Keep in step with the SQL; the comments there say what each column means.

diesel::table! {
    /// One row per user: the head of the user's event stream, whose row lock
    /// serialises the user's changes.
    otp_user_streams (user_id) {
        /// The user's id.
        user_id -> Text,
        /// The newest event's sequence number (0 before the first).
        last_sequence -> BigInt,
        /// Wrong codes since the last right one.
        failed_attempts -> Integer,
        /// When the last wrong code came.
        last_failure_at -> Nullable<Timestamptz>,
        /// Moves by one with every write of the user's state (the
        /// compare-and-swap of optimistic changes).
        version -> BigInt,
        /// The keyring key id of the recovery-code hashes.
        recovery_key_id -> Nullable<Text>,
        /// HMAC-SHA256 of each unused recovery code (never a code).
        recovery_hashes -> Nullable<Array<Bytea>>,
    }
}

diesel::table! {
    /// The user's current factor; at most one per user.
    otp_factors (user_id) {
        /// Whose factor it is.
        user_id -> Text,
        /// `not_ready` or `ready`.
        state -> Text,
        /// The id of the key that sealed the secret.
        key_id -> Text,
        /// The sealed secret.
        sealed_secret -> Bytea,
        /// `SHA1`, `SHA256` or `SHA512`.
        algorithm -> Text,
        /// Digits per code.
        digits -> SmallInt,
        /// Seconds per time step.
        period -> Integer,
        /// Steps accepted either side.
        skew -> SmallInt,
        /// When it was added.
        created_at -> Timestamptz,
        /// When it last changed state.
        changed_at -> Timestamptz,
        /// The newest accepted time step.
        last_used_step -> Nullable<BigInt>,
    }
}

diesel::table! {
    /// The append-only per-user event stream.
    otp_events (user_id, sequence) {
        /// Whose stream.
        user_id -> Text,
        /// 1, 2, 3, ... per user.
        sequence -> BigInt,
        /// The event's stable name.
        kind -> Text,
        /// Who acted.
        actor -> Text,
        /// The user's organisation, if known.
        resource_owner -> Nullable<Text>,
        /// When it happened.
        occurred_at -> Timestamptz,
    }
}

diesel::joinable!(otp_factors -> otp_user_streams (user_id));
diesel::joinable!(otp_events -> otp_user_streams (user_id));
diesel::allow_tables_to_appear_in_same_query!(otp_user_streams, otp_factors, otp_events);
