#!/usr/bin/env bash
# Soak: Mayfly's token exchange (SQLite, durable) held at half of its peak
# for 30 minutes, to show that the server's memory and SQLite's write-ahead
# log stay bounded and that no request fails over time.
#
#   1. peak: wrk, 2 threads, 64 connections, 10 s (the same request as
#      bench/run_broker.sh: an RFC 8693 exchange for one task)
#   2. soak: hey at half that rate for BENCH_SOAK_SECONDS; every
#      BENCH_SOAK_SAMPLE seconds one line of bench/work/soak/soak.csv:
#      elapsed s, server RSS and peak RSS (KiB), the RSS split into the
#      process's own memory (RssAnon) and the database file's pages it maps
#      (RssFile: page cache, capped by SQLite's mmap_size of 1 GiB), WAL and
#      database bytes, live leases and exchanges issued and refused (from
#      /metrics), load
#   3. a summary: the curve's first, middle and last samples, the most the
#      RSS and the WAL reached, and every non-200 answer hey saw (the script
#      fails if there is one)
#
# Usage: bench/run_soak.sh   (build first: cargo build --release -p mayfly)
# Environment:
#   MAYFLY_BIN=path            Mayfly binary (default target/release/mayfly)
#   BENCH_SOAK_SECONDS=1800    how long the load lasts
#   BENCH_SOAK_SAMPLE=10       seconds between samples
#   BENCH_SOAK_RATE=n          exchanges/s to hold (default: half the peak)
#   BENCH_SOAK_TTL=300         lifetime asked for each token (s): leases
#                              expire and are swept while the soak runs
#   BENCH_SOAK_KEEP_CLOSED=s   [retention] closed_seconds (default: Mayfly's,
#                              7 days: nothing is deleted during the soak)
#   BENCH_SOAK_KEEP_AUDIT=s    [retention] audit_seconds (default: Mayfly's,
#                              0: the whole audit chain is kept)
#   BENCH_WORK=dir             work folder (default bench/work, which git ignores)
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$BENCH")"
WORK="${BENCH_WORK:-$BENCH/work}"
SW="$WORK/soak"
MAYFLY_BIN="${MAYFLY_BIN:-$ROOT/target/release/mayfly}"
SECONDS_TOTAL="${BENCH_SOAK_SECONDS:-1800}"
SAMPLE="${BENCH_SOAK_SAMPLE:-10}"
TTL="${BENCH_SOAK_TTL:-300}"

log() { printf '[soak] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ -x "$MAYFLY_BIN" ]] || die "no Mayfly binary at $MAYFLY_BIN (cargo build --release -p mayfly)"
mkdir -p "$SW"

# --- tools ----------------------------------------------------------------------
# shellcheck source=bench/broker/tools.sh
source "$BENCH/broker/tools.sh"
bench_tools "${BENCH_VENV:-$WORK/venv}" cryptography PyJWT

# --- the server -------------------------------------------------------------------
"$PY" "$BENCH/broker/jwt_keys.py" --out "$SW/keys" --ttl "$((SECONDS_TOTAL + 3600))"
JWT="$(cat "$SW/keys/workload.jwt")"
PORT="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
URL="http://127.0.0.1:$PORT"
# shellcheck source=bench/broker/mayfly.sh
source "$BENCH/broker/mayfly.sh"
mayfly_config "$SW" "$PORT"
if [[ -n "${BENCH_SOAK_KEEP_CLOSED:-}${BENCH_SOAK_KEEP_AUDIT:-}" ]]; then
    printf '\n[retention]\nclosed_seconds = %s\naudit_seconds = %s\n' \
        "${BENCH_SOAK_KEEP_CLOSED:-604800}" "${BENCH_SOAK_KEEP_AUDIT:-0}" >>"$SW/mayfly.toml"
fi
rm -f "$SW"/mayfly.db*
MAYFLY_ADMIN_TOKEN="$("$PY" -c 'import secrets; print(secrets.token_urlsafe(24))')" \
    "$MAYFLY_BIN" serve --config "$SW/mayfly.toml" --db "$SW/mayfly.db" >"$SW/mayfly.log" 2>&1 &
PID=$!
LOAD_PID=""
trap 'kill $LOAD_PID $PID 2>/dev/null || true' EXIT
for _ in $(seq 300); do
    [[ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/healthz")" == 200 ]] && break
    kill -0 "$PID" 2>/dev/null || die "mayfly serve exited; see $SW/mayfly.log"
    sleep 0.1
done
TASK="$(curl -sS --fail-with-body -X POST -H "Authorization: Bearer $JWT" -H 'Content-Type: application/json' \
    -d '{"purpose":"soak","owner":"team-bench","ttl_seconds":'"$((SECONDS_TOTAL + 600))"',"audiences":["https://api.bench.invalid"]}' \
    "$URL/v1/tasks" | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["id"])')"
BODY="$SW/exchange.form"
mayfly_exchange_form "$BODY" "$JWT" "$TASK" "$TTL"
log "mayfly serve at $URL (pid $PID), task $TASK, tokens of ${TTL}s"

# --- peak, then half of it -----------------------------------------------------------
export BENCH_BODY_FILE="$BODY" BENCH_CONTENT_TYPE=application/x-www-form-urlencoded
if [[ -z "${BENCH_SOAK_RATE:-}" ]]; then
    BENCH_WRK_JSON="$SW/peak.json" wrk -t2 -c64 -d10s -s "$BENCH/broker/post.lua" "$URL/oauth2/token" >"$SW/peak.txt"
    PEAK="$("$PY" -c 'import json, sys; print(int(json.load(open(sys.argv[1]))["requests_per_s"]))' "$SW/peak.json")"
    RATE=$((PEAK / 2))
    log "peak $PEAK exchanges/s; soaking at $RATE/s for ${SECONDS_TOTAL}s"
else
    RATE="$BENCH_SOAK_RATE"
    log "soaking at $RATE/s for ${SECONDS_TOTAL}s"
fi
WORKERS=$(((RATE + 499) / 500))
((WORKERS >= 4)) || WORKERS=4
hey -z "${SECONDS_TOTAL}s" -c "$WORKERS" -q "$(((RATE + WORKERS - 1) / WORKERS))" -m POST \
    -T application/x-www-form-urlencoded -D "$BODY" "$URL/oauth2/token" >"$SW/hey.txt" 2>&1 &
LOAD_PID=$!

# --- the curve --------------------------------------------------------------------------
metric() {  # name{labels} -> value from /metrics, or "" when absent
    awk -v m="$1" '$1 == m {print $2; exit}' <<<"$METRICS"
}
echo "elapsed_s,rss_kib,peak_rss_kib,rss_anon_kib,rss_file_kib,wal_bytes,db_bytes,live_leases,issued,refused,load1" >"$SW/soak.csv"
START=$(date +%s)
while kill -0 "$LOAD_PID" 2>/dev/null; do
    sleep "$SAMPLE"
    kill -0 "$PID" 2>/dev/null || die "mayfly serve died during the soak; see $SW/mayfly.log"
    METRICS="$(curl -s --max-time 5 "$URL/metrics" || true)"
    refused="$(awk '/^mayfly_exchanges_total\{outcome="refused"/ {n += $2} END {print n + 0}' <<<"$METRICS")"
    printf '%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n' "$(($(date +%s) - START))" \
        "$(awk '/^VmRSS/{print $2}' "/proc/$PID/status")" "$(awk '/^VmHWM/{print $2}' "/proc/$PID/status")" \
        "$(awk '/^RssAnon/{print $2}' "/proc/$PID/status")" "$(awk '/^RssFile/{print $2}' "/proc/$PID/status")" \
        "$(stat -c %s "$SW/mayfly.db-wal" 2>/dev/null || echo 0)" "$(stat -c %s "$SW/mayfly.db")" \
        "$(metric mayfly_live_leases)" "$(metric 'mayfly_exchanges_total{outcome="issued",error=""}')" \
        "$refused" "$(cut -d' ' -f1 /proc/loadavg)" | tee -a "$SW/soak.csv" >&2
done
wait "$LOAD_PID" || true
LOAD_PID=""

# --- summary ----------------------------------------------------------------------------
"$PY" - "$SW/soak.csv" "$SW/hey.txt" <<'EOF'
import csv, re, sys
rows = list(csv.DictReader(open(sys.argv[1])))
hey = open(sys.argv[2]).read()
if not rows:
    sys.exit("no sample was taken")
def at(i):
    r = rows[i]
    return (f"{r['elapsed_s']:>6} s  RSS {int(r['rss_kib']) / 1024:7.1f} MiB (own {int(r['rss_anon_kib']) / 1024:6.1f})"
            f"  WAL {int(r['wal_bytes']) / 2**20:6.2f} MiB"
            f"  db {int(r['db_bytes']) / 2**20:8.1f} MiB  live leases {r['live_leases']:>8}  issued {r['issued']:>9}")
print("first  " + at(0))
print("middle " + at(len(rows) // 2))
print("last   " + at(-1))
print(f"most RSS {max(int(r['peak_rss_kib']) for r in rows) / 1024:.1f} MiB "
      f"(own memory at most {max(int(r['rss_anon_kib']) for r in rows) / 1024:.1f} MiB), "
      f"most WAL {max(int(r['wal_bytes']) for r in rows) / 2**20:.2f} MiB, "
      f"refused {rows[-1]['refused']}")
# hey keeps at most 1,000,000 results for its summary (its figures cover
# the first million answers); the server's own counter covers them all.
codes = dict(re.findall(r"\[(\d+)\]\s+(\d+) responses", hey))
errors = re.search(r"Error distribution:(.*)", hey, re.S)
print(f"hey: {hey.split('Summary:')[-1].split('Response time histogram')[0].strip()}")
print(f"status codes {codes}")
bad = sum(int(n) for c, n in codes.items() if c != "200") + int(rows[-1]["refused"] or 0)
if bad or errors:
    sys.exit(f"{bad} non-200 answers; {errors.group(1).strip() if errors else ''}")
EOF
log "curve in $SW/soak.csv"
