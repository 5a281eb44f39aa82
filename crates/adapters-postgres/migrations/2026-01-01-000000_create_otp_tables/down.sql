-- Drops the OTP factor store, dependents first.
DROP TABLE otp_events;
DROP TABLE otp_factors;
DROP TABLE otp_user_streams;
