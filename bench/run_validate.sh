#!/usr/bin/env bash
# `mayfly scan --validate` of many distinct secrets against local stand-ins
# of the providers' identity endpoints (the test suite's fake providers):
# wall time, and whether the per-host limits held.
#
# Usage: bench/run_validate.sh
# Environment:
#   MAYFLY_BIN=path          Mayfly binary (default target/release/mayfly; built when missing)
#   VALIDATE_COUNT=1000      distinct secrets
#   VALIDATE_RATE=20         requests per second to one host (--validate-rate)
#   VALIDATE_PER_HOST=4      requests in flight to one host (--validate-per-host)
#   BENCH_WORK=dir           work folder (default bench/work)
# Prints one Markdown table row; exits 1 if a verdict is wrong, a limit was
# exceeded or the run took 5 s or more.
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$BENCH")"
WORK="${BENCH_WORK:-$BENCH/work}/validate"
MAYFLY_BIN="${MAYFLY_BIN:-$ROOT/target/release/mayfly}"
COUNT="${VALIDATE_COUNT:-1000}"
RATE="${VALIDATE_RATE:-20}"
PER_HOST="${VALIDATE_PER_HOST:-4}"

log() { printf '[validate] %s\n' "$*" >&2; }

if [[ ! -x "$MAYFLY_BIN" ]]; then
    log "building $MAYFLY_BIN"
    (cd "$ROOT" && cargo build --release --locked -p mayfly --bin mayfly)
fi
[[ -x /usr/bin/time ]] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null; }

rm -rf "$WORK"
mkdir -p "$WORK"
python3 "$BENCH/validate/plant.py" --mayfly "$MAYFLY_BIN" --out "$WORK" --count "$COUNT" >&2

python3 "$ROOT/crates/mayfly/tests/data/providers/fake_providers.py" "$WORK/fake.json" >"$WORK/port" &
FAKE=$!
trap 'kill $FAKE 2>/dev/null || true' EXIT
for _ in $(seq 50); do [[ -s "$WORK/port" ]] && break; sleep 0.1; done
PORT="$(cat "$WORK/port")"
ENDPOINTS="$(sed "s/PORT/$PORT/g" "$WORK/endpoints.txt")"
: >"$WORK/requests.jsonl"

log "validating $COUNT secrets (rate $RATE/s and $PER_HOST in flight per host)"
set +e
MAYFLY_HOME="$WORK/home" MAYFLY_PROVIDER_ENDPOINTS="$ENDPOINTS" /usr/bin/time -f '%e %U %S %M' -o "$WORK/time.txt" \
    "$MAYFLY_BIN" scan "$WORK/secrets" --validate --no-copies --no-progress --show-secrets --format json -o "$WORK/out.json" \
    --validate-rate "$RATE" --validate-per-host "$PER_HOST" 2>"$WORK/stderr.txt"
code=$?
set -e
[[ $code == 1 ]] || { cat "$WORK/stderr.txt" >&2; log "mayfly exited $code"; exit 1; }
cat "$WORK/stderr.txt" >&2
echo "| secrets | hosts | requests | verdicts right | wall s | CPU s | max RSS MiB | most in flight to one host | most requests to one host in 1 s | closest two requests to one host |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
python3 "$BENCH/validate/check.py" "$WORK/out.json" "$WORK/requests.jsonl" "$WORK/expected.json" "$WORK/time.txt" "$RATE" "$PER_HOST"
