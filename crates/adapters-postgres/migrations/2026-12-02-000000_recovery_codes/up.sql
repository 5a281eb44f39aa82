-- Recovery codes: a user's unused codes live in the user's stream row, as
-- the HMAC-SHA256 of each code (never a code) and the id of the keyring key
-- the set was hashed with. Being part of the row every change compares and
-- swaps, a redemption and any other change of the user (another redemption
-- of the same code on another replica included) are ordered by the same
-- version: a code is redeemed at most once. Additive: older binaries
-- neither read nor write these columns.
ALTER TABLE otp_user_streams
    ADD COLUMN recovery_key_id TEXT,
    ADD COLUMN recovery_hashes BYTEA[],
    ADD CONSTRAINT otp_user_streams_recovery_pair
        CHECK ((recovery_key_id IS NULL) = (recovery_hashes IS NULL));
