-- The OTP factor store: one factor per user and that user's append-only
-- event stream. Every change of a user runs in one transaction that first
-- locks the user's row in otp_user_streams.

-- One row per user who ever changed a factor: the head of the user's event
-- stream. Its row lock serialises all changes of that user, across processes.
CREATE TABLE otp_user_streams (
    -- The user's id (the token's `sub`).
    user_id       TEXT   PRIMARY KEY,
    -- The sequence number of the user's newest event (0 before the first);
    -- the next event gets last_sequence + 1.
    last_sequence BIGINT NOT NULL CHECK (last_sequence >= 0)
);

-- The user's current OTP factor. The primary key on user_id is what makes
-- "at most one factor per user" hold; a removed factor is a deleted row.
CREATE TABLE otp_factors (
    -- Whose factor it is.
    user_id       TEXT        PRIMARY KEY REFERENCES otp_user_streams (user_id),
    -- 'not_ready' after add, 'ready' after the first right code.
    state         TEXT        NOT NULL CHECK (state IN ('not_ready', 'ready')),
    -- The id of the configured key that sealed the secret.
    key_id        TEXT        NOT NULL,
    -- The TOTP secret sealed by that key (nonce, ciphertext and tag); never
    -- the plain secret.
    sealed_secret BYTEA       NOT NULL,
    -- The HMAC hash the factor was enrolled with.
    algorithm     TEXT        NOT NULL CHECK (algorithm IN ('SHA1', 'SHA256', 'SHA512')),
    -- Digits per code (6 or 8; checked again when the row is read).
    digits        SMALLINT    NOT NULL,
    -- Seconds per time step.
    period        INTEGER     NOT NULL,
    -- Time steps accepted either side of the current one.
    skew          SMALLINT    NOT NULL,
    -- When the factor was added.
    created_at    TIMESTAMPTZ NOT NULL,
    -- When the factor last changed state.
    changed_at    TIMESTAMPTZ NOT NULL
);

-- What happened to each user's factor, in order; rows are only ever added.
CREATE TABLE otp_events (
    -- Whose stream the event belongs to.
    user_id        TEXT        NOT NULL REFERENCES otp_user_streams (user_id),
    -- 1, 2, 3, ... per user without gaps (the contract's details.sequence).
    sequence       BIGINT      NOT NULL,
    -- The event's stable name: 'otp.added', 'otp.verified' or 'otp.removed'.
    kind           TEXT        NOT NULL,
    -- The subject that made the change (for "me" calls, the user).
    actor          TEXT        NOT NULL,
    -- The user's organisation when the token named it (details.resourceOwner).
    resource_owner TEXT        NULL,
    -- When the change happened (details.changeDate).
    occurred_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, sequence)
);
