#!/usr/bin/env bash
# Mayfly benchmark: builds the corpus (if needed), installs the peers
# (Kingfisher, Betterleaks, gitleaks) from PyPI into bench/work/venv, times
# every scanner on the same corpus with GNU time, and scores the reports.
#
# Usage: bench/run.sh            (from anywhere; paths are resolved from this file)
# Environment:
#   BENCH_SEED=20260101   seed of the corpus (fakes and their placement)
#   BENCH_RUNS=3          timed runs per tool (the median is reported); one
#                         untimed warm-up run per tool comes first
#   BENCH_TOOLS="mayfly kingfisher betterleaks gitleaks"   tools to run
#   MAYFLY_BIN=path       Mayfly binary (default target/release/mayfly; built
#                         with `cargo build --release --locked` when missing)
#   BENCH_REBUILD_CORPUS=1  rebuild the corpus even if it exists
#   BENCH_WORK=dir        work folder (default bench/work, which git ignores)
# Results: bench/work/results.md (table), bench/work/score-details.json,
# bench/work/out/<tool>.json (reports), bench/work/timings/<tool>.<n>.time.
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$BENCH")"
WORK="${BENCH_WORK:-$BENCH/work}"
SEED="${BENCH_SEED:-20260101}"
RUNS="${BENCH_RUNS:-3}"
TOOLS="${BENCH_TOOLS:-mayfly kingfisher betterleaks gitleaks}"
MAYFLY_BIN="${MAYFLY_BIN:-$ROOT/target/release/mayfly}"

log() { printf '[bench] %s\n' "$*" >&2; }

mkdir -p "$WORK"/{out,timings,logs}

source "$BENCH/peers.sh"

# --- corpus -----------------------------------------------------------------
manifest_seed() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["seed"])' "$WORK/manifest.json" 2>/dev/null || true; }
if [[ "${BENCH_REBUILD_CORPUS:-0}" == 1 || ! -d "$WORK/corpus" || ! -f "$WORK/manifest.json" || "$(manifest_seed)" != "$SEED" ]]; then
    log "building the corpus (seed $SEED)"
    python3 "$BENCH/make_corpus.py" --seed "$SEED" --out "$WORK"
fi

# --- versions and machine ---------------------------------------------------
MAYFLY_VERSION="$("$MAYFLY_BIN" --version | awk '{print $2}')"
KINGFISHER_VERSION="$("$KINGFISHER" --version | awk '{print $2}')"
BETTERLEAKS_VERSION="$("$BETTERLEAKS" version | tail -n1)"
GITLEAKS_VERSION=""
[[ $HAVE_GITLEAKS == 1 ]] && GITLEAKS_VERSION="$("$GITLEAKS" version | tail -n1)"
cat >"$WORK/versions.json" <<EOF
{"mayfly": "$MAYFLY_VERSION", "kingfisher": "$KINGFISHER_VERSION", "betterleaks": "$BETTERLEAKS_VERSION", "gitleaks": "$GITLEAKS_VERSION"}
EOF
{
    echo "nproc: $(nproc)"
    lscpu | grep 'Model name' | sed 's/  */ /g'
    echo "memory: $(free -h | awk '/^Mem:/{print $2}')"
    echo "os: $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r)"
    echo "date: $(date -u +%FT%TZ)"
    echo "load average before the runs: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$WORK/machine.txt"
if awk '{exit !($1 > 0.5)}' /proc/loadavg; then
    log "warning: the machine is busy (load $(cut -d' ' -f1-3 /proc/loadavg)); timings will be noisy"
fi
cat "$WORK/machine.txt" >&2

# --- the commands -------------------------------------------------------------
# Every tool scans the same directory, `corpus`, from $WORK, writes JSON, and
# makes no network request (no validation, no update check).
MAYFLY_HOME_DIR="$(mktemp -d)"
trap 'rm -rf "$MAYFLY_HOME_DIR"' EXIT
cmd_mayfly=(env MAYFLY_HOME="$MAYFLY_HOME_DIR" "$MAYFLY_BIN" scan corpus --format json --no-progress --show-secrets
    -o out/mayfly.json)
cmd_kingfisher=("$KINGFISHER" scan corpus --no-validate --no-update-check --no-dedup --quiet --format json
    -o out/kingfisher.json)
cmd_betterleaks=("$BETTERLEAKS" filesystem corpus --no-banner --silent --log-level error -o out/betterleaks.json)
cmd_gitleaks=("$GITLEAKS" dir corpus --no-banner --log-level error --report-format json
    --report-path out/gitleaks.json)
# Exit codes that mean "ran and found secrets".
ok_mayfly="0 1"; ok_kingfisher="0 200 205"; ok_betterleaks="0 1"; ok_gitleaks="0 1"

run_one() {  # tool, timing file or "" for the warm-up
    local tool="$1" timing="$2" rc=0 ok
    local -n cmd="cmd_$tool"
    local -n okcodes="ok_$tool"
    if [[ -n "$timing" ]]; then
        /usr/bin/time -v -o "$timing" "${cmd[@]}" >>"logs/$tool.log" 2>&1 || rc=$?
    else
        "${cmd[@]}" >>"logs/$tool.log" 2>&1 || rc=$?
    fi
    for ok in $okcodes; do [[ $rc == "$ok" ]] && return 0; done
    log "$tool failed (exit $rc); see $WORK/logs/$tool.log"
    return 1
}

cd "$WORK"
log "warming the page cache"
find corpus -type f -print0 | xargs -0 cat >/dev/null
for tool in $TOOLS; do
    rm -f timings/"$tool".*.time out/"$tool".json logs/"$tool".log
    if [[ $tool == gitleaks && $HAVE_GITLEAKS != 1 ]]; then
        log "gitleaks: skipped (not installed)"
        continue
    fi
    local_cmd="cmd_$tool[@]"
    log "$tool: ${!local_cmd}"
    log "$tool: warm-up run"
    run_one "$tool" ""
    for i in $(seq 1 "$RUNS"); do
        run_one "$tool" "timings/$tool.$i.time"
        log "$tool: run $i: $(awk -F': ' '/Elapsed/{print $2}' "timings/$tool.$i.time") wall"
    done
done

echo "load average after the runs: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$WORK/machine.txt"
python3 "$BENCH/score.py" --work "$WORK"
