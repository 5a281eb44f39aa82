-- Verify as any service that checks the code must run it: first read the
-- user's state (the stream head and the sealed secret, one statement by
-- primary key), then the `verify` ceiling's one durable statement
-- (`../shared/bench/ceilings/verify.sql` from the workspace root), in autocommit each.
-- Not a ceiling: the bound a read-then-write service meets on this
-- machine with no service and no HTTP at all (docs/performance.md).
\set uid random(1, :n)
SELECT s.last_sequence, s.failed_attempts, s.last_failure_at, f.state, f.key_id,
  f.sealed_secret, f.algorithm, f.digits, f.period, f.skew, f.last_used_step
  FROM streams s LEFT JOIN factors f ON f.user_id = s.user_id WHERE s.user_id = 'p' || :uid;
WITH f AS (
  UPDATE factors SET state = 'ready', last_used_step = 59000000, changed_at = now()
  WHERE user_id = 'p' || :uid RETURNING user_id),
s AS (
  UPDATE streams SET last_sequence = last_sequence + 1, failed_attempts = 0
  FROM f WHERE streams.user_id = f.user_id RETURNING streams.user_id, last_sequence)
INSERT INTO events SELECT s.user_id, s.last_sequence, 'otp.verified', s.user_id, 'org1', now() FROM s
RETURNING sequence, occurred_at;
