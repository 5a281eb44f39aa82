-- Optimistic changes: every write of a user's state (a change, a re-seal
-- under a new key, the purge of a stale pending factor) moves the stream
-- row's version by one, in the same statement. A change reads the user's
-- state in one statement, decides, and writes in one statement that applies
-- only if the version (and the stream head) are still the ones it read; on a
-- lost race it reads and decides again. Additive: rows written before this
-- migration start at version 0.
ALTER TABLE otp_user_streams
    ADD COLUMN version BIGINT NOT NULL DEFAULT 0 CHECK (version >= 0);
