#!/usr/bin/env bash
# Two workstation latencies, measured side by side with their baselines:
#
# 1. Local attestation plus token exchange, one request at a time (the latency
# an agent on a workstation sees before its first call): a Python client
# (bench/local/attest_latency.py, standard library only) asks the unix
# socket for an identity (kernel facts, executable hash, ES256 token), then
# exchanges it at the broker (RFC 8693) for a task credential. The same
# exchange with one cached identity token is measured in the same run, as
# the baseline, and so is attestation alone. The client's own time (Python,
# a new unix connection each time) is included: the figures are upper
# bounds on what the server adds.
#
# 2. The MCP stdio gate (bench/local/gate_latency.py): the same JSON-RPC
# client calls the same MCP server (the official Python SDK) directly and
# through `mayfly run --mcp-gate`, one tools/call at a time, alternating,
# paced at half the gated path's peak; the difference is what the gate adds
# (a policy decision at the broker per call, the audit record sent in
# batches).
#
# 3. A wrapped remote MCP server (bench/local/remote_latency.py): the same
# client calls a remote server (the official SDK over streamable HTTP,
# wanting a key) through `mayfly mcp connect` with the key in a header, and
# as `mayfly mcp wrap` rewrites it (relay, broker proxy adding the key from
# custody, policy gate).
#
#   bench/run_workstation.sh                 # N=5000 timed, 500 warm-up
#   LOCAL_BENCH_N=20000 bench/run_workstation.sh
#   MAYFLY_BIN=path/to/mayfly                 # default: target/release/mayfly
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
WORK="$ROOT/bench/work/local"
N="${LOCAL_BENCH_N:-5000}"
WARMUP="${LOCAL_BENCH_WARMUP:-500}"
GATE_N="${LOCAL_BENCH_GATE_N:-2000}"
MAYFLY="${MAYFLY_BIN:-$ROOT/target/release/mayfly}"
log() { printf '[local] %s\n' "$*" >&2; }
[[ -x "$MAYFLY" ]] || { log "no mayfly binary at $MAYFLY (cargo build --release -p mayfly)"; exit 1; }

rm -rf "$WORK"
mkdir -p "$WORK/home"
chmod 700 "$WORK/home"
# No per-workload exchange limit: the loop exchanges thousands of times a
# second for one workload.
cat > "$WORK/mayfly.toml" <<TOML
[limits]
exchanges_per_second_per_workload = 0
TOML
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
MAYFLY_HOME="$WORK/home" MAYFLY_LOG=warn "$MAYFLY" serve --config "$WORK/mayfly.toml" \
  --listen "127.0.0.1:$PORT" > "$WORK/serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  [[ -S "$WORK/home/workload.sock" ]] && curl -sf "http://127.0.0.1:$PORT/.well-known/jwks.json" >/dev/null && break
  sleep 0.1
done
log "machine: $(nproc) cores, $(uname -r); mayfly $("$MAYFLY" --version)"
log "N=$N timed iterations per mode after $WARMUP warm-up, one at a time"
python3 "$ROOT/bench/local/attest_latency.py" "$WORK/home/workload.sock" "http://127.0.0.1:$PORT" "$N" "$WARMUP" \
  | tee "$WORK/result.json"
log "MCP gate: N=$GATE_N calls per path after $WARMUP warm-up"
python3 -c 'import mcp' 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check 'mcp>=1.10'
MAYFLY_SERVER="http://127.0.0.1:$PORT" MAYFLY_HOME="$WORK/home" \
  python3 "$ROOT/bench/local/gate_latency.py" "$MAYFLY" "$ROOT/crates/mayfly/tests/data/mcp/issues_server.py" "$GATE_N" "$WARMUP" \
  | tee "$WORK/gate.json"
log "remote MCP server, wrapped: N=$GATE_N calls per path after $WARMUP warm-up"
REMOTE_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
REMOTE_KEY="bench-$(python3 -c 'import secrets; print(secrets.token_hex(20))')"
python3 "$ROOT/crates/mayfly/tests/data/mcp/remote_server.py" "$REMOTE_PORT" "$REMOTE_KEY" /dev/null \
  > "$WORK/remote.log" 2>&1 &
REMOTE=$!
trap 'kill $SERVER $REMOTE 2>/dev/null; wait $SERVER $REMOTE 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  curl -s -o /dev/null "http://127.0.0.1:$REMOTE_PORT/mcp" && break
  sleep 0.1
done
printf '%s' "$REMOTE_KEY" | MAYFLY_HOME="$WORK/home" MAYFLY_SERVER="http://127.0.0.1:$PORT" \
  "$MAYFLY" custody add bench-remote --provider generic --owner bench \
  --upstream "http://127.0.0.1:$REMOTE_PORT" --stdin >/dev/null
MAYFLY_SERVER="http://127.0.0.1:$PORT" MAYFLY_HOME="$WORK/home" \
  python3 "$ROOT/bench/local/remote_latency.py" "$MAYFLY" "http://127.0.0.1:$REMOTE_PORT/mcp" "$REMOTE_KEY" \
  bench-remote "$GATE_N" "$WARMUP" | tee "$WORK/remote.json"
RSS=$(ps -o rss= -p $SERVER | tr -d ' ')
log "server RSS after the run: $((RSS / 1024)) MiB"
