-- Replay protection and attempt limits (additive: older binaries keep
-- working against this schema, they just do not use the new columns).

-- Wrong codes since the last right one, per user: kept on the stream row,
-- whose lock already serialises the user's changes, so the count is exact
-- across replicas and outlives a removed factor.
ALTER TABLE otp_user_streams
    ADD COLUMN failed_attempts INTEGER     NOT NULL DEFAULT 0 CHECK (failed_attempts >= 0),
    ADD COLUMN last_failure_at TIMESTAMPTZ NULL;

-- The newest TOTP time step accepted for this factor; codes of this or an
-- earlier step are refused (RFC 6238 section 5.2).
ALTER TABLE otp_factors
    ADD COLUMN last_used_step BIGINT NULL CHECK (last_used_step >= 0);

-- Finds stale pending factors for the periodic purge.
CREATE INDEX otp_factors_pending_created_at
    ON otp_factors (created_at) WHERE state = 'not_ready';
