ALTER TABLE otp_user_streams DROP COLUMN version;
