#!/usr/bin/env bash
# Fuzz the live API against its own OpenAPI document with schemathesis: once with an
# admin key, once with no key. Every check (`-c all`): no 5xx, every answer in its
# declared status codes and schema. Rate limits are off so the fuzzer is never refused.
#
#   .ci/schemathesis.sh [BINARY]        (default target/debug/echopilot)
#   SCHEMATHESIS_LONG=1 .ci/schemathesis.sh   a long run: more examples, 10 minutes each
#
# schemathesis comes from $SCHEMATHESIS, .ci/.venv, or PATH; with CI set, a missing
# one is an error, not a skip.
set -euo pipefail
cd "$(dirname "$0")/.."

bin="${1:-target/debug/echopilot}"
st="${SCHEMATHESIS:-}"
if [ -z "$st" ]; then
  if [ -x .ci/.venv/bin/schemathesis ]; then st=.ci/.venv/bin/schemathesis
  elif command -v schemathesis >/dev/null; then st=$(command -v schemathesis)
  fi
fi
if [ -z "$st" ]; then
  if [ -n "${CI:-}" ]; then
    echo "schemathesis.sh: schemathesis is not installed (python3 -m venv .ci/.venv && .ci/.venv/bin/pip install 'schemathesis>=4,<5')" >&2
    exit 1
  fi
  echo "schemathesis.sh: schemathesis not installed; skipped (CI is not set)" >&2
  exit 0
fi
[ -x "$bin" ] || { echo "schemathesis.sh: no binary at $bin (cargo build first)" >&2; exit 1; }

home=$(mktemp -d)
key="st-admin-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
log="$home/server.out"
ALLOW_DIRTY=true DASHBOARD_KEY="$key" \
  RATE_LIMIT_PER_MIN=0 WORKER_RATE_LIMIT_PER_MIN=0 WEBHOOK_RATE_LIMIT_PER_MIN=0 \
  AUTH_FAIL_LIMIT_PER_MIN=0 SCHEDULER_TICK_SECS=5 STRIPE_WEBHOOK_SECRET=whsec_schemathesis \
  "$bin" serve --home "$home" --bind 127.0.0.1:0 >"$log" 2>&1 &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$home"; }
trap cleanup EXIT

base=""
for _ in $(seq 1 100); do
  base=$(grep -o 'listening on http://[0-9.:]*' "$log" | head -1 | sed 's/listening on //' || true)
  [ -n "$base" ] && curl -fsS "$base/api/status/summary" >/dev/null 2>&1 && break
  base=""
  sleep 0.1
done
[ -n "$base" ] || { echo "schemathesis.sh: the server did not start:" >&2; cat "$log" >&2; exit 1; }

if [ -n "${SCHEMATHESIS_LONG:-}" ]; then
  budget=(-n 1000 --max-time 600)
else
  budget=(-n "${SCHEMATHESIS_EXAMPLES:-30}")
fi
run() {
  echo "== schemathesis against $base ($1)"
  shift
  "$st" --config-file tests/schemathesis.toml run "$base/api/openapi.json" \
    -c all --seed 1 --generation-database none --no-color \
    --phases examples,coverage,fuzzing "${budget[@]}" "$@"
}
status=0
run "admin key" -H "X-Dash-Key: $key" || status=1
run "no key" || status=1
exit $status
