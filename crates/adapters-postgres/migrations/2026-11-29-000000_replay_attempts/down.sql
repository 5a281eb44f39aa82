DROP INDEX otp_factors_pending_created_at;
ALTER TABLE otp_factors DROP COLUMN last_used_step;
ALTER TABLE otp_user_streams
    DROP COLUMN last_failure_at,
    DROP COLUMN failed_attempts;
