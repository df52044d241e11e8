#!/usr/bin/env bash
# Schemathesis over openapi.yaml against a started gateway (issue 11), in a bounded form that
# .ci/run executes after the tests.
#
# - schemathesis is pinned (SCHEMATHESIS_VERSION) and installed from PyPI with pip into a venv
#   under the cargo target folder (kept between runs);
# - the gateway is the debug `throughcare` binary the test build produces, serving the example
#   configuration (throughcare.toml, certificates in certs-example/) on a free loopback port over
#   a temporary data folder, with rate limits relaxed for the run;
# - each run authenticates as a sample client: its client certificate (mutual TLS) and a bearer
#   token obtained by the real token flow (a client assertion signed by the sign-assertion
#   example, exchanged with curl over the same certificate), sent as a header;
# - checks: not_a_server_error, status_code_conformance, content_type_conformance,
#   response_schema_conformance (positive_data_acceptance is left out: the schemas are looser
#   than the profiles by design).
#
# Exits non-zero on any failure. When PyPI cannot be reached to install schemathesis, it says so
# loudly and exits 0 (skipped). Knobs: SCHEMATHESIS_MAX_EXAMPLES (per operation, default 100),
# SCHEMATHESIS_TIMEOUT (seconds per run, default 300), SCHEMATHESIS_VENV, SCHEMATHESIS_SEED.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

SCHEMATHESIS_VERSION=4.32.5
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
VENV=${SCHEMATHESIS_VENV:-$TARGET/schemathesis-venv-$SCHEMATHESIS_VERSION}
MAX_EXAMPLES=${SCHEMATHESIS_MAX_EXAMPLES:-100}
RUN_TIMEOUT=${SCHEMATHESIS_TIMEOUT:-300}
# A fixed seed keeps CI reproducible; set SCHEMATHESIS_SEED to explore further.
SEED=${SCHEMATHESIS_SEED:-20261130}

say() { echo "schemathesis.sh: $*" >&2; }

# --- schemathesis, pinned, in a venv -------------------------------------------------------
command -v python3 >/dev/null 2>&1 || { say "python3 is required"; exit 1; }
mkdir -p "$TARGET"
if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -qF "$SCHEMATHESIS_VERSION"; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  if ! "$VENV/bin/pip" install --quiet --disable-pip-version-check \
      "schemathesis==$SCHEMATHESIS_VERSION" >"$TARGET/schemathesis-pip.log" 2>&1; then
    # Was it the index that could not be reached, or something else?
    probe=$(mktemp -d)
    if ! "$VENV/bin/pip" download --quiet --disable-pip-version-check --no-deps \
        --dest "$probe" "schemathesis==$SCHEMATHESIS_VERSION" >/dev/null 2>&1; then
      rm -rf "$VENV" "$probe"
      echo "######################################################################" >&2
      echo "# WARNING: PyPI cannot be reached: the schemathesis run is SKIPPED.   #" >&2
      echo "######################################################################" >&2
      exit 0
    fi
    rm -rf "$probe"
    cat "$TARGET/schemathesis-pip.log" >&2
    say "installing schemathesis==$SCHEMATHESIS_VERSION failed"
    exit 1
  fi
fi
ST="$VENV/bin/schemathesis"

# --- the gateway ---------------------------------------------------------------------------
# The test build makes both; building them here is a no-op after `cargo test`.
cargo build --locked --quiet --bin throughcare --example sign-assertion
BIN="$TARGET/debug/throughcare"
SIGN="$TARGET/debug/examples/sign-assertion"

WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE="https://localhost:$PORT"
CERTS="$ROOT/certs-example"

# Rate limits relaxed for the run (the fuzzer is one client on one address); tokens outlive it.
THROUGHCARE__RATE_LIMITS__PER_CLIENT_PER_SECOND=100000 \
THROUGHCARE__RATE_LIMITS__PER_CLIENT_BURST=100000 \
THROUGHCARE__RATE_LIMITS__PER_IP_PER_SECOND=100000 \
THROUGHCARE__RATE_LIMITS__PER_IP_BURST=100000 \
THROUGHCARE__AUTH__ACCESS_TOKEN_TTL_SECS=3600 \
RUST_LOG=${RUST_LOG:-warn,throughcare::access=info} \
  "$BIN" serve --config "$ROOT/throughcare.toml" --listen "127.0.0.1:$PORT" \
  --data-dir "$WORK/data" >"$WORK/gateway.log" 2>&1 &
SERVER_PID=$!

for _ in $(seq 1 240); do
  if curl -sf --cacert "$CERTS/ca.crt" "$BASE/healthz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    cat "$WORK/gateway.log" >&2
    say "the gateway did not start"
    exit 1
  fi
  sleep 0.5
done
curl -sf --cacert "$CERTS/ca.crt" "$BASE/healthz" >/dev/null || {
  cat "$WORK/gateway.log" >&2
  say "the gateway did not answer /healthz"
  exit 1
}

# A token for a sample client by the real flow: an assertion signed with its key, exchanged over
# a connection presenting its certificate (the token is bound to that certificate).
token_for() {
  local client=$1 assertion response
  assertion=$("$SIGN" "$client" "$CERTS/clients/$client.key" "$BASE/oauth2/token")
  response=$(curl -s --cacert "$CERTS/ca.crt" \
    --cert "$CERTS/clients/$client.crt" --key "$CERTS/clients/$client.key" \
    -d grant_type=client_credentials \
    -d client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer \
    -d "client_assertion=$assertion" "$BASE/oauth2/token")
  python3 -c 'import json, sys; print(json.loads(sys.argv[1])["access_token"])' "$response" || {
    say "no token for $client: $response"
    return 1
  }
}

# --- the runs ------------------------------------------------------------------------------
# One run per client, over the operations that client is meant to use (the others answer 403,
# which tests/api/openapi.rs probes on every route).
STATUS=0
CASES=0
FAILING=0
run() {
  local client=$1
  shift
  local token rc cases failing
  token=$(token_for "$client")
  say "run as $client (max $MAX_EXAMPLES examples per operation, seed $SEED)"
  rc=0
  timeout "$RUN_TIMEOUT" "$ST" run "$ROOT/openapi.yaml" \
      --url "$BASE" \
      --tls-verify "$CERTS/ca.crt" \
      --request-cert "$CERTS/clients/$client.crt" \
      --request-cert-key "$CERTS/clients/$client.key" \
      --header "Authorization: Bearer $token" \
      --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
      --phases examples,coverage,fuzzing \
      --max-examples "$MAX_EXAMPLES" \
      --seed "$SEED" \
      --workers 1 \
      --request-timeout 30 \
      --no-color \
      --generation-database none \
      --report junit --report-junit-path "$WORK/junit-$client.xml" \
      "$@" >"$WORK/run-$client.log" 2>&1 || rc=$?
  cat "$WORK/run-$client.log"
  if [ "$rc" -ne 0 ]; then
    [ "$rc" -eq 124 ] && say "the run as $client took longer than ${RUN_TIMEOUT} s"
    STATUS=1
  fi
  cases=$(sed -n 's/^ *\([0-9][0-9]*\) generated.*/\1/p' "$WORK/run-$client.log" | tail -1)
  CASES=$((CASES + ${cases:-0}))
  failing=0
  if [ -f "$WORK/junit-$client.xml" ]; then
    failing=$(python3 - "$WORK/junit-$client.xml" <<'PY'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else list(root)
print(sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites))
PY
    )
  fi
  FAILING=$((FAILING + failing))
  say "$client: ${cases:-0} test cases, $failing failing operations (exit $rc)"
}

run prison --exclude-path-regex '^/admin' --exclude-path /fhir/AuditEvent
run icb --include-path-regex '^/admin'
run auditor --include-path /fhir/AuditEvent

if ! kill -0 "$SERVER_PID" 2>/dev/null; then
  tail -n 50 "$WORK/gateway.log" >&2
  say "the gateway is no longer running"
  STATUS=1
fi

# Every request the gateway served is in its access log (token requests and readiness too).
REQUESTS=$(grep -c "throughcare::access" "$WORK/gateway.log" || true)
SERVER_ERRORS=$(grep "throughcare::access" "$WORK/gateway.log" | grep -cE " 5[0-9]{2} [0-9]+ms" || true)
say "total: $CASES test cases, $REQUESTS requests served ($SERVER_ERRORS answered 5xx), $FAILING failing operations"
if grep -q "ERROR" "$WORK/gateway.log"; then
  say "the gateway logged errors (first 20 lines):"
  grep "ERROR" "$WORK/gateway.log" | head -20 >&2
fi
if [ "$STATUS" -ne 0 ] || [ "$FAILING" -ne 0 ] || [ "$SERVER_ERRORS" -ne 0 ]; then
  say "FAILED"
  exit 1
fi
say "passed"
