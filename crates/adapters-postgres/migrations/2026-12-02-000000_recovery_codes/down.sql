ALTER TABLE otp_user_streams
    DROP CONSTRAINT otp_user_streams_recovery_pair,
    DROP COLUMN recovery_hashes,
    DROP COLUMN recovery_key_id;
