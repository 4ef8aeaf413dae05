#!/usr/bin/env bash
# Inventory at scale: builds a SQLite inventory of 1,000,000 locations with
# the `inventory_scale` example (which also times the merge of a 100,000
# finding rescan), then times the commands a user runs on it, each in a new
# process as from a shell: `mayfly inventory list` and `mayfly govern plan`
# (text and JSON), output to /dev/null.
#
# Usage: bench/run_inventory.sh   (from anywhere)
# Environment:
#   INVENTORY_RUNS=5          runs of each command (median, min and max shown)
#   BENCH_WORK=dir            work folder (default bench/work, which git ignores)
# Results: bench/work/inventory/results.txt (also on stdout).
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$BENCH")"
WORK="${BENCH_WORK:-$BENCH/work}/inventory"
RUNS="${INVENTORY_RUNS:-5}"
DB="$WORK/inventory.db"
OUT="$WORK/results.txt"
mkdir -p "$WORK"

cd "$ROOT"
cargo build --release --locked -q -p mayfly -p mayfly-inventory --example inventory_scale
MAYFLY="$ROOT/target/release/mayfly"

rm -f "$DB" "$DB-wal" "$DB-shm"
{
    echo "# inventory at scale, $(date -u +%FT%TZ), $(nproc) cores, $(lscpu | awk -F: '/Model name/{gsub(/^ +/, "", $2); print $2; exit}')"
    "$ROOT/target/release/examples/inventory_scale" "$DB"
} | tee "$OUT"

time_command() {  # label, command...: RUNS runs, median/min/max wall seconds
    local label="$1" times=() i start end; shift
    for ((i = 0; i < RUNS; i++)); do
        start="$(date +%s.%N)"
        "$@" >/dev/null || [[ $? == 1 ]]   # exit 1: actions due, not an error
        end="$(date +%s.%N)"
        times+=("$(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.3f", b - a}')")
    done
    printf '%s\n' "${times[@]}" | sort -n | awk -v label="$label" '
        {t[NR] = $1} END {printf "%-40s median %.3f s  min %.3f s  max %.3f s  (%d runs)\n", label, t[int((NR + 1) / 2)], t[1], t[NR], NR}'
}

{
    echo "# the CLI on that inventory ($RUNS runs each, output to /dev/null)"
    time_command "mayfly inventory list" "$MAYFLY" inventory list --db "$DB"
    time_command "mayfly govern plan" "$MAYFLY" govern plan --db "$DB"
    time_command "mayfly govern plan --format json" "$MAYFLY" govern plan --format json --db "$DB"
} | tee -a "$OUT"
