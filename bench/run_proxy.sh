#!/usr/bin/env bash
# Injecting-proxy benchmark: Mayfly's /proxy/{entry} side by side with nginx
# (the Debian package) configured as a reverse proxy that adds a static
# Authorization header, in front of the same loopback upstream (nginx
# answering a fixed 11-byte JSON), driven by the same load generators.
# Mayfly does, per request, what nginx does not: a token check, a read of
# the token's lease from the store, a Cedar `use` decision, opening the
# sealed key, and an audit event plus per-task counters committed after.
#
#   1. peak: wrk -t2 at each of PROXY_CONNECTIONS for PROXY_DURATION s against
#      the upstream directly, nginx and Mayfly; the best requests/s of each
#   2. latency at half of Mayfly's peak: hey at that rate for PROXY_DURATION s
#      against each; Mayfly's added p99 is its p99 minus the direct p99
#   3. first chunk: a streaming upstream sends one server-sent event 50 ms
#      after its headers; how long each proxy takes to pass it on
#      (PROXY_SAMPLES requests each; bench/proxy/first_chunk.py)
#
# Usage: bench/run_proxy.sh
# Environment:
#   MAYFLY_BIN=path             Mayfly binary (default target/release/mayfly)
#   PROXY_DURATION=10           seconds of each measured run
#   PROXY_CONNECTIONS="8 16 32 64"
#   PROXY_SAMPLES=200           first-chunk samples per proxy
#   BENCH_WORK=dir              work folder (default bench/work, which git ignores)
# Results: bench/work/proxy-results.json and a table on stdout.
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$BENCH")"
WORK="${BENCH_WORK:-$BENCH/work}"
PW="$WORK/proxy"
MAYFLY_BIN="${MAYFLY_BIN:-$ROOT/target/release/mayfly}"
DURATION="${PROXY_DURATION:-10}"
CONNECTIONS="${PROXY_CONNECTIONS:-8 16 32 64}"
SAMPLES="${PROXY_SAMPLES:-200}"

log() { printf '[proxy] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

missing=()
for tool in wrk hey curl nginx; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if ((${#missing[@]})); then
    log "installing ${missing[*]/nginx/nginx} (apt)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
[[ -x "$MAYFLY_BIN" ]] || die "no Mayfly binary at $MAYFLY_BIN: cargo build --release -p mayfly (or set MAYFLY_BIN)"

rm -rf "$PW"
mkdir -p "$PW/home" "$PW/nginx"
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP="$(free_port)"; NG="$(free_port)"; MF="$(free_port)"

# --- the streaming upstream (first-chunk probe), started first: its port goes into both proxies
coproc PROBE { python3 "$BENCH/proxy/first_chunk.py" "$SAMPLES"; }
PIDS+=("$PROBE_PID")
read -r SSE <&"${PROBE[0]}"
log "streaming upstream on 127.0.0.1:$SSE"

# --- nginx: the upstream and the reverse proxy --------------------------------
cat >"$PW/nginx/nginx.conf" <<CONF
worker_processes auto;
daemon off;
user root;
pid $PW/nginx/nginx.pid;
error_log $PW/nginx/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $PW/nginx/body;
    proxy_temp_path $PW/nginx/proxy;
    fastcgi_temp_path $PW/nginx/fastcgi;
    uwsgi_temp_path $PW/nginx/uwsgi;
    scgi_temp_path $PW/nginx/scgi;
    upstream app { server 127.0.0.1:$UP; keepalive 128; }
    server {
        listen 127.0.0.1:$UP;
        location / { default_type application/json; return 200 '{"ok":true}'; }
    }
    server {
        listen 127.0.0.1:$NG;
        location /sse/ {
            proxy_pass http://127.0.0.1:$SSE/sse/;
            proxy_http_version 1.1;
            proxy_buffering off;
            proxy_set_header Authorization "Bearer sk-static-upstream-key";
        }
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "Bearer sk-static-upstream-key";
        }
    }
}
CONF
nginx -c "$PW/nginx/nginx.conf" -p "$PW/nginx" &
PIDS+=("$!")
NGINX_VERSION="$(nginx -v 2>&1 | sed 's/.*nginx\///')"

# --- Mayfly: embedded defaults, two entries in custody, one task ------------
export MAYFLY_HOME="$PW/home"
unset MAYFLY_ADMIN_TOKEN MAYFLY_DB
"$MAYFLY_BIN" serve --listen "127.0.0.1:$MF" 2>"$PW/mayfly.log" &
MAYFLY_PID=$!
PIDS+=("$MAYFLY_PID")
for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$MF/.well-known/jwks.json" >/dev/null 2>&1 && curl -fsS "http://127.0.0.1:$UP/" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -fsS "http://127.0.0.1:$MF/.well-known/jwks.json" >/dev/null || die "mayfly serve did not start: $(cat "$PW/mayfly.log")"
export MAYFLY_SERVER="http://127.0.0.1:$MF"
"$MAYFLY_BIN" identity mint --sub local:bench/agent >"$PW/id.jwt"
export MAYFLY_IDENTITY_TOKEN_FILE="$PW/id.jwt"
export BENCH_UPSTREAM_KEY="sk-bench-upstream-key-0123456789"
"$MAYFLY_BIN" custody add bench --provider generic --owner bench --upstream "http://127.0.0.1:$UP" --from-env BENCH_UPSTREAM_KEY >/dev/null 2>&1
"$MAYFLY_BIN" custody add sse --provider generic --owner bench --upstream "http://127.0.0.1:$SSE" --from-env BENCH_UPSTREAM_KEY >/dev/null 2>&1
TASK="$("$MAYFLY_BIN" task start --purpose benchmark --owner bench --ttl 3600 \
    --audience urn:mayfly:custody:bench --audience urn:mayfly:custody:sse --raw)"
TOKEN="$("$MAYFLY_BIN" token exchange --task "$TASK" --audience urn:mayfly:custody:bench --ttl 900 --raw)"
SSE_TOKEN="$("$MAYFLY_BIN" token exchange --task "$TASK" --audience urn:mayfly:custody:sse --ttl 900 --raw)"
[[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$MF/proxy/bench/x")" == 200 ]] \
    || die "the proxy does not answer 200: $(curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$MF/proxy/bench/x")"

declare -A URL=(
    [direct]="http://127.0.0.1:$UP/x"
    [nginx]="http://127.0.0.1:$NG/x"
    [mayfly]="http://127.0.0.1:$MF/proxy/bench/x"
)
declare -A HEADER=([direct]="X-Bench: 1" [nginx]="X-Bench: 1" [mayfly]="Authorization: Bearer $TOKEN")

# --- 1. peak ----------------------------------------------------------------
declare -A PEAK PEAK_C PEAK_P99
cpu_of() { awk '{print $14 + $15}' "/proc/$1/stat"; }
declare -A CPU_PER_REQ
for target in direct nginx mayfly; do
    best=0
    for c in $CONNECTIONS; do
        wrk -t2 -c"$c" -d2s -H "${HEADER[$target]}" "${URL[$target]}" >/dev/null 2>&1
        before=$(cpu_of "$MAYFLY_PID")
        out="$(wrk -t2 -c"$c" -d"${DURATION}s" --latency -H "${HEADER[$target]}" "${URL[$target]}")"
        after=$(cpu_of "$MAYFLY_PID")
        rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
        non2xx="$(awk '/Non-2xx/ {print $NF}' <<<"$out")"
        p99="$(awk '$1 == "99%" {print $2}' <<<"$out")"
        [[ -z "$non2xx" ]] || die "$target: $non2xx answers were not 2xx at $c connections"
        log "$target: $c connections: $rps requests/s, p99 $p99"
        if awk -v a="$rps" -v b="$best" 'BEGIN {exit !(a > b)}'; then
            best="$rps"; PEAK_C[$target]="$c"; PEAK_P99[$target]="$p99"
            if [[ "$target" == mayfly ]]; then
                CPU_PER_REQ[mayfly]="$(awk -v t="$((after - before))" -v r="$rps" -v d="$DURATION" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.0f", t / hz / (r * d) * 1e6}')"
            fi
        fi
    done
    PEAK[$target]="$best"
done

# --- 2. latency at half of Mayfly's peak -------------------------------------
HALF="$(awk -v p="${PEAK[mayfly]}" 'BEGIN {printf "%d", p / 2}')"
WORKERS=16
declare -A P50 P99 GOT
for target in direct nginx mayfly; do
    out="$(hey -z "${DURATION}s" -c "$WORKERS" -q "$(awk -v h="$HALF" -v w="$WORKERS" 'BEGIN {printf "%.2f", h / w}')" \
        -H "${HEADER[$target]}" "${URL[$target]}")"
    GOT[$target]="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
    P50[$target]="$(awk '/50% in/ {print $3 * 1000}' <<<"$out")"
    P99[$target]="$(awk '/99% in/ {print $3 * 1000}' <<<"$out")"
    log "$target at $HALF requests/s: got ${GOT[$target]}, p50 ${P50[$target]} ms, p99 ${P99[$target]} ms"
done

# --- 3. first chunk -----------------------------------------------------------
log "first chunk: $SAMPLES samples per proxy"
printf '[["direct", "http://127.0.0.1:%s/sse", ""], ["nginx", "http://127.0.0.1:%s/sse", ""], ["mayfly", "http://127.0.0.1:%s/proxy/sse/sse", "Authorization: Bearer %s"]]\n' \
    "$SSE" "$NG" "$MF" "$SSE_TOKEN" >&"${PROBE[1]}"
read -r FIRST <&"${PROBE[0]}"
[[ "$FIRST" == "{"* ]] || die "the first-chunk probe failed: $FIRST"

# --- results ------------------------------------------------------------------
export FIRST HALF DURATION CONNECTIONS NGINX_VERSION
export PEAK_DIRECT="${PEAK[direct]}" PEAK_NGINX="${PEAK[nginx]}" PEAK_MAYFLY="${PEAK[mayfly]}"
export C_DIRECT="${PEAK_C[direct]}" C_NGINX="${PEAK_C[nginx]}" C_MAYFLY="${PEAK_C[mayfly]}"
export P99PEAK_DIRECT="${PEAK_P99[direct]}" P99PEAK_NGINX="${PEAK_P99[nginx]}" P99PEAK_MAYFLY="${PEAK_P99[mayfly]}"
export GOT_DIRECT="${GOT[direct]}" GOT_NGINX="${GOT[nginx]}" GOT_MAYFLY="${GOT[mayfly]}"
export P50_DIRECT="${P50[direct]}" P50_NGINX="${P50[nginx]}" P50_MAYFLY="${P50[mayfly]}"
export P99_DIRECT="${P99[direct]}" P99_NGINX="${P99[nginx]}" P99_MAYFLY="${P99[mayfly]}"
export CPU_MAYFLY="${CPU_PER_REQ[mayfly]}"
export MAYFLY_VERSION="$("$MAYFLY_BIN" --version | awk '{print $2}')"
python3 "$BENCH/proxy/report.py" "$WORK/proxy-results.json"
