# shellcheck shell=bash
# The smoke checks of a running otp-service, shared by deploy/smoke-test (the
# release binary as uid 65532 under setpriv) and .ci/image-check (the image
# under `podman run` and the chart under `podman kube play`), so each way of
# running the service passes the same checks. Sourced, not run.
#
# The caller defines how its service is watched and stopped:
#   service_alive        status 0 while the service process runs
#   service_term         sends it SIGTERM
#   service_exit_code    once it has stopped: sets SERVICE_EXIT to its exit status
#                        (called in the current shell, so it may `wait`)
#   service_logs         prints everything it logged so far
# and sets SMOKE_TMP (a scratch directory). Needs curl (HTTP/2), python3,
# openssl, oathtool.

SMOKE_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STOP_BOUND=${SMOKE_STOP_SECONDS:-30}   # drain_delay 5s + timeout 20s + margin
START_BOUND=${SMOKE_START_SECONDS:-30}
SMOKE_AUDIENCE=smoke
pass=0
ok() { pass=$((pass + 1)); printf 'ok   %s\n' "$*"; }
die() { printf 'FAIL %s\n' "$*" >&2; exit 1; }

# A throwaway OpenID issuer on loopback (deploy/tools/test-issuer.py): sets
# ISSUER (its URL) and ISSUER_PID. The caller kills ISSUER_PID on exit.
# shellcheck disable=SC2034 # ISSUER is for the caller
smoke_issuer_start() {
  python3 "$SMOKE_LIB_DIR/tools/test-issuer.py" serve "$SMOKE_TMP/issuer" > "$SMOKE_TMP/issuer.log" 2>&1 &
  ISSUER_PID=$!
  for _ in $(seq 1 100); do
    [ -s "$SMOKE_TMP/issuer/issuer" ] && break
    kill -0 "$ISSUER_PID" 2>/dev/null || die "the test issuer exited: $(cat "$SMOKE_TMP/issuer.log")"
    sleep 0.1
  done
  [ -s "$SMOKE_TMP/issuer/issuer" ] || die "the test issuer did not start"
  ISSUER="$(cat "$SMOKE_TMP/issuer/issuer")"
}

# Waits for the service's JSON log line reporting its ports: sets HTTP_PORT and GRPC_PORT.
smoke_wait_ports() {
  HTTP_PORT="" GRPC_PORT=""
  for _ in $(seq 1 $((START_BOUND * 10))); do
    service_alive || die "the service exited early: $(service_logs 2>&1 | tail -5)"
    service_logs > "$SMOKE_TMP/ports.log" 2>&1 || true
    HTTP_PORT="$(grep -o '"http_port":[0-9]*' "$SMOKE_TMP/ports.log" | head -1 | cut -d: -f2 || true)"
    GRPC_PORT="$(grep -o '"grpc_port":[0-9]*' "$SMOKE_TMP/ports.log" | head -1 | cut -d: -f2 || true)"
    [ -n "$HTTP_PORT" ] && [ -n "$GRPC_PORT" ] && return 0
    sleep 0.1
  done
  die "the service did not report its ports within ${START_BOUND}s: $(service_logs 2>&1 | tail -5)"
}

smoke_status() { curl -sS -o "$SMOKE_TMP/body" -w '%{http_code}' --max-time 5 "$@"; }

# /healthz and /readyz answer 200 (readiness waited for, within START_BOUND).
check_probes() {
  local base="$1" ready=""
  for _ in $(seq 1 $((START_BOUND * 10))); do
    service_alive || die "the service exited before it was ready: $(service_logs 2>&1 | tail -5)"
    ready="$(smoke_status "$base/readyz" 2>/dev/null)" && [ "$ready" = 200 ] && break
    sleep 0.1
  done
  [ "$ready" = 200 ] || die "/readyz answered ${ready:-nothing}, not 200, within ${START_BOUND}s"
  [ "$(smoke_status "$base/healthz")" = 200 ] || die "/healthz did not answer 200"
  ok "/healthz 200, /readyz 200"
}

# Tokenless calls: 401, google.rpc.Status JSON with code 16, a Bearer challenge.
check_unauthenticated() {
  local base="$1" code
  code="$(curl -sS -D "$SMOKE_TMP/headers" -o "$SMOKE_TMP/body" -w '%{http_code}' --max-time 5 \
    -X POST -H 'Content-Type: application/json' -d '{}' "$base/auth/v1/users/me/auth_factors/_search")"
  [ "$code" = 401 ] || die "unauthenticated List answered $code, not 401"
  grep -qi '^content-type: application/json' "$SMOKE_TMP/headers" || die "401 is not JSON"
  grep -qi '^www-authenticate: Bearer' "$SMOKE_TMP/headers" || die "401 has no Bearer challenge"
  python3 -c 'import json,sys; b=json.load(open(sys.argv[1])); assert b["code"]==16, b' "$SMOKE_TMP/body" \
    || die "401 body is not a google.rpc.Status with code 16: $(cat "$SMOKE_TMP/body")"
  ok "unauthenticated POST /auth/v1/users/me/auth_factors/_search: 401 JSON, code 16, Bearer challenge"
  code="$(smoke_status -X POST -H 'Content-Type: application/json' -d '{}' "$base/auth/v1/users/me/auth_factors/otp")"
  [ "$code" = 401 ] || die "unauthenticated Add answered $code, not 401"
  ok "unauthenticated POST /auth/v1/users/me/auth_factors/otp: 401"
}

# gRPC health over h2c: an empty HealthCheckRequest; SERVING is field 1 = 1.
check_grpc_health() {
  local port="$1"
  printf '\0\0\0\0\0' > "$SMOKE_TMP/health.req"
  curl -sS --http2-prior-knowledge --max-time 5 -X POST -H 'content-type: application/grpc' -H 'te: trailers' \
    --data-binary @"$SMOKE_TMP/health.req" -o "$SMOKE_TMP/health.resp" \
    "http://127.0.0.1:$port/grpc.health.v1.Health/Check" || die "gRPC health call failed"
  [ "$(od -An -tx1 "$SMOKE_TMP/health.resp" | tr -d ' \n')" = "00000000020801" ] \
    || die "gRPC health did not answer SERVING: $(od -An -tx1 "$SMOKE_TMP/health.resp")"
  ok "grpc.health.v1.Health/Check: SERVING"
}

# The enrolment a user makes, with a token from the test issuer: Add (otpauth
# URL and secret), Verify with a code oathtool computes from that secret, and
# List shows the factor READY. Each call makes a fresh user.
check_enrol() {
  local base="$1" totp_issuer="$2" user token code secret url
  user="smoke-user-$RANDOM$RANDOM"
  token="$(python3 "$SMOKE_LIB_DIR/tools/test-issuer.py" token "$SMOKE_TMP/issuer" "$SMOKE_AUDIENCE" "$user" "$user@smoke.example")" \
    || die "the test issuer made no token"
  local auth=(-H "Authorization: Bearer $token" -H 'Content-Type: application/json' -H 'Accept: application/json')
  code="$(smoke_status -X POST "${auth[@]}" -d '{}' "$base/auth/v1/users/me/auth_factors/otp")"
  [ "$code" = 200 ] || die "Add answered $code: $(cat "$SMOKE_TMP/body")"
  url="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$SMOKE_TMP/body")" \
    || die "Add's answer has no url: $(cat "$SMOKE_TMP/body")"
  secret="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["secret"])' "$SMOKE_TMP/body")" \
    || die "Add's answer has no secret"
  case "$url" in
    "otpauth://totp/$totp_issuer:$user@smoke.example?"*"secret=$secret"*) ;;
    *) die "Add's url is not the otpauth URL for $totp_issuer:$user@smoke.example with the secret" ;;
  esac
  ok "Add: 200, otpauth URL for $totp_issuer:$user@smoke.example and its secret"
  # Unverified, the factor is not listed.
  code="$(smoke_status -X POST "${auth[@]}" -d '{}' "$base/auth/v1/users/me/auth_factors/_search")"
  [ "$code" = 200 ] || die "List answered $code: $(cat "$SMOKE_TMP/body")"
  python3 -c 'import json,sys; b=json.load(open(sys.argv[1])); assert b.get("result", []) == [], b' "$SMOKE_TMP/body" \
    || die "List shows a factor before Verify: $(cat "$SMOKE_TMP/body")"
  code="$(smoke_status -X POST "${auth[@]}" -d '{"code":"12345x"}' "$base/auth/v1/users/me/auth_factors/otp/_verify")"
  [ "${code:0:1}" = 4 ] || die "Verify with a malformed code answered $code, not 4xx"
  local totp
  totp="$(oathtool --totp -b "$secret")" || die "oathtool failed on the secret"
  code="$(smoke_status -X POST "${auth[@]}" -d "{\"code\":\"$totp\"}" "$base/auth/v1/users/me/auth_factors/otp/_verify")"
  [ "$code" = 200 ] || die "Verify with oathtool's code answered $code: $(cat "$SMOKE_TMP/body")"
  python3 -c 'import json,sys; b=json.load(open(sys.argv[1])); assert b["details"]["sequence"], b' "$SMOKE_TMP/body" \
    || die "Verify's answer has no details: $(cat "$SMOKE_TMP/body")"
  ok "Verify: a malformed code refused (4xx), oathtool's code 200 with details"
  code="$(smoke_status -X POST "${auth[@]}" -d '{}' "$base/auth/v1/users/me/auth_factors/_search")"
  [ "$code" = 200 ] || die "List answered $code: $(cat "$SMOKE_TMP/body")"
  python3 -c '
import json, sys
b = json.load(open(sys.argv[1]))
assert b["result"] == [{"state": "AUTH_FACTOR_STATE_READY", "otp": {}}], b
' "$SMOKE_TMP/body" || die "List does not show one READY otp factor: $(cat "$SMOKE_TMP/body")"
  ok "List: one READY otp factor"
  SMOKE_SECRETS+=("$secret" "$token")
}

# SIGTERM drains: /readyz turns 503 while the listeners still accept, then the
# process exits 0 within STOP_BOUND.
check_drain() {
  local base="$1" ready="" started stopped="" elapsed
  started="$(date +%s%N)"
  service_term || die "could not send SIGTERM"
  for _ in $(seq 1 30); do
    ready="$(smoke_status "$base/readyz" 2>/dev/null)" && [ "$ready" = 503 ] && break
    sleep 0.1
  done
  [ "$ready" = 503 ] || die "/readyz answered ${ready:-nothing} after SIGTERM, not 503 (draining)"
  ok "SIGTERM: /readyz 503 while draining"
  while [ $(($(date +%s%N) - started)) -lt $((STOP_BOUND * 1000000000)) ]; do
    if ! service_alive; then stopped=1; break; fi
    sleep 0.1
  done
  elapsed="$(awk "BEGIN {printf \"%.1f\", ($(date +%s%N) - $started) / 1e9}")"
  [ -n "$stopped" ] || die "the service still runs ${STOP_BOUND}s after SIGTERM"
  SERVICE_EXIT=""
  service_exit_code
  [ "$SERVICE_EXIT" = 0 ] || die "the service exited ${SERVICE_EXIT:-?} after SIGTERM: $(service_logs 2>&1 | tail -5)"
  ok "SIGTERM: exit 0 within ${elapsed}s (bound ${STOP_BOUND}s)"
}

# Every line of FILE is JSON and none shows a secret (the arguments, and
# everything check_enrol collected in SMOKE_SECRETS).
SMOKE_SECRETS=()
check_logs() {
  local file="$1"; shift
  python3 -c '
import json, sys
for n, line in enumerate(open(sys.argv[1]), 1):
    if line.strip():
        json.loads(line)
' "$file" || die "a log line is not JSON"
  local secret
  for secret in "$@" "${SMOKE_SECRETS[@]}"; do
    if grep -qF -e "$secret" "$file"; then die "a log line shows a secret"; fi
  done
  ok "logs are JSON lines ($(grep -c . "$file")) and show no secret"
}
