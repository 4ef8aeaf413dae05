#!/usr/bin/env bash
# Mayfly git-history benchmark: builds the synthetic history (if needed),
# reuses the peers of bench/run.sh (Kingfisher, Betterleaks, gitleaks, pinned,
# in bench/work/venv), times every scanner on the full history of all refs
# with GNU time, scores the reports, then times `mayfly scan --staged` on a
# clone with 20 staged files.
#
# Usage: bench/run_git.sh        (from anywhere; paths are resolved from this file)
# Environment:
#   BENCH_SEED=20260101    seed of the history (fakes, edits, branches)
#   BENCH_COMMITS=2000     commits in the history
#   BENCH_LARGE=1          a large project's history (make_history.py --large:
#                          topic branches, renames, 4-6 MB files)
#   BENCH_RUNS=3           timed runs per tool (the median is reported); one
#                          untimed warm-up run per tool comes first
#   BENCH_TOOLS="mayfly kingfisher betterleaks gitleaks"   tools to run
#   BENCH_STAGED_RUNS=20   runs of the --staged timing (after 3 warm-up runs)
#   BENCH_STAGED=0         skip the --staged timing
#   MAYFLY_BIN=path        Mayfly binary (default target/release/mayfly)
#   BENCH_REBUILD_HISTORY=1  rebuild the history even if it exists
#   BENCH_MAX_LOAD=0.8     wait (up to BENCH_WAIT_QUIET seconds, default 900)
#                          for the 1-minute load average to drop below this
#   BENCH_WORK=dir         work folder (default bench/work, which git ignores)
# Results: bench/work/results-git.md, bench/work/score-git-details.json,
# bench/work/out-git/<tool>.json, bench/work/timings-git/<tool>.<n>.time,
# bench/work/staged.json, bench/work/machine-git.txt.
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$BENCH")"
WORK="${BENCH_WORK:-$BENCH/work}"
SEED="${BENCH_SEED:-20260101}"
COMMITS="${BENCH_COMMITS:-2000}"
LARGE="${BENCH_LARGE:-0}"
RUNS="${BENCH_RUNS:-3}"
STAGED_RUNS="${BENCH_STAGED_RUNS:-20}"
TOOLS="${BENCH_TOOLS:-mayfly kingfisher betterleaks gitleaks}"
MAYFLY_BIN="${MAYFLY_BIN:-$ROOT/target/release/mayfly}"
MAX_LOAD="${BENCH_MAX_LOAD:-0.8}"
WAIT_QUIET="${BENCH_WAIT_QUIET:-900}"

log() { printf '[bench-git] %s\n' "$*" >&2; }

mkdir -p "$WORK"/{out-git,timings-git,logs-git}

source "$BENCH/peers.sh"

# --- the history --------------------------------------------------------------
REPO="$WORK/history"
manifest_field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], False))' \
    "$WORK/history-manifest.json" "$1" 2>/dev/null || true; }
if [[ "${BENCH_REBUILD_HISTORY:-0}" == 1 || ! -d "$REPO" || ! -f "$WORK/history-manifest.json" ||
      "$(manifest_field seed)" != "$SEED" ||
      "$(manifest_field large)" != "$([[ $LARGE == 1 ]] && echo True || echo False)" ]] ||
   [[ "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["summary"]["commits"] >= int(sys.argv[2]))' \
        "$WORK/history-manifest.json" "$COMMITS" 2>/dev/null)" != True ]]; then
    log "building the history (seed $SEED, $COMMITS commits)"
    python3 "$BENCH/make_history.py" --seed "$SEED" --commits "$COMMITS" --out "$WORK" \
        $([[ $LARGE == 1 ]] && echo --large)
fi

# --- versions and machine ---------------------------------------------------
MAYFLY_VERSION="$("$MAYFLY_BIN" --version | awk '{print $2}')"
KINGFISHER_VERSION="$("$KINGFISHER" --version | awk '{print $2}')"
BETTERLEAKS_VERSION="$("$BETTERLEAKS" version | tail -n1)"
GITLEAKS_VERSION=""
[[ $HAVE_GITLEAKS == 1 ]] && GITLEAKS_VERSION="$("$GITLEAKS" version | tail -n1)"
cat >"$WORK/versions-git.json" <<EOF
{"mayfly": "$MAYFLY_VERSION", "kingfisher": "$KINGFISHER_VERSION", "betterleaks": "$BETTERLEAKS_VERSION", "gitleaks": "$GITLEAKS_VERSION", "git": "$(git --version | awk '{print $3}')"}
EOF

# Timings are only meaningful on a quiet machine: wait for the load to drop.
wait_quiet() {
    local waited=0
    while awk -v max="$MAX_LOAD" '{exit !($1 >= max)}' /proc/loadavg; do
        if (( waited >= WAIT_QUIET )); then
            log "warning: still busy after ${waited}s (load $(cut -d' ' -f1-3 /proc/loadavg)); timing anyway"
            return 1
        fi
        log "machine busy (load $(cut -d' ' -f1-3 /proc/loadavg)); waiting"
        sleep 30
        waited=$((waited + 30))
    done
}
QUIET=yes
wait_quiet || QUIET=no
{
    echo "nproc: $(nproc)"
    lscpu | grep 'Model name' | sed 's/  */ /g'
    echo "memory: $(free -h | awk '/^Mem:/{print $2}')"
    echo "os: $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r)"
    echo "git: $(git --version)"
    echo "date: $(date -u +%FT%TZ)"
    echo "mayfly binary: $MAYFLY_BIN ($(date -u -r "$MAYFLY_BIN" +%FT%TZ))"
    echo "load average before the runs: $(cut -d' ' -f1-3 /proc/loadavg) (quiet: $QUIET, threshold $MAX_LOAD)"
} >"$WORK/machine-git.txt"
cat "$WORK/machine-git.txt" >&2

# --- the commands -------------------------------------------------------------
# Every tool scans the bare repository `history` from $WORK: all blobs / all
# commits reachable from every ref, JSON report, no network request.
MAYFLY_HOME_DIR="$(mktemp -d)"
trap 'rm -rf "$MAYFLY_HOME_DIR"' EXIT
cmd_mayfly=(env MAYFLY_HOME="$MAYFLY_HOME_DIR" "$MAYFLY_BIN" scan --git history --format json --no-progress
    --show-secrets -o out-git/mayfly.json)
cmd_kingfisher=("$KINGFISHER" scan history --git-history full --no-validate --no-update-check --no-dedup --quiet
    --format json -o out-git/kingfisher.json)
cmd_betterleaks=("$BETTERLEAKS" git history --no-banner --silent --log-level error -o out-git/betterleaks.json)
cmd_gitleaks=("$GITLEAKS" git history --no-banner --log-level error --report-format json
    --report-path out-git/gitleaks.json --log-opts=--all)
ok_mayfly="0 1"; ok_kingfisher="0 200 205"; ok_betterleaks="0 1"; ok_gitleaks="0 1"

run_one() {  # tool, timing file or "" for the warm-up
    local tool="$1" timing="$2" rc=0 ok
    local -n cmd="cmd_$tool"
    local -n okcodes="ok_$tool"
    if [[ -n "$timing" ]]; then
        /usr/bin/time -v -o "$timing" "${cmd[@]}" >>"logs-git/$tool.log" 2>&1 || rc=$?
    else
        "${cmd[@]}" >>"logs-git/$tool.log" 2>&1 || rc=$?
    fi
    for ok in $okcodes; do [[ $rc == "$ok" ]] && return 0; done
    log "$tool failed (exit $rc); see $WORK/logs-git/$tool.log"
    return 1
}

cd "$WORK"
log "warming the page cache"
cat history/objects/pack/* >/dev/null
git -C history rev-list --all --objects >/dev/null
for tool in $TOOLS; do
    rm -f timings-git/"$tool".*.time out-git/"$tool".json logs-git/"$tool".log
    if [[ $tool == gitleaks && $HAVE_GITLEAKS != 1 ]]; then
        log "gitleaks: skipped (not installed)"
        continue
    fi
    local_cmd="cmd_$tool[@]"
    log "$tool: ${!local_cmd}"
    log "$tool: warm-up run"
    run_one "$tool" ""
    for i in $(seq 1 "$RUNS"); do
        run_one "$tool" "timings-git/$tool.$i.time"
        log "$tool: run $i: $(awk -F': ' '/Elapsed/{print $2}' "timings-git/$tool.$i.time") wall"
    done
done
echo "load average after the history runs: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$WORK/machine-git.txt"

# --- --staged -------------------------------------------------------------------
rm -f "$WORK/staged.json"
if [[ "${BENCH_STAGED:-1}" != 0 ]]; then
    log "preparing the --staged repository (clone + 20 staged files)"
    python3 "$BENCH/make_history.py" --seed "$SEED" --out "$WORK" --staged-repo "$WORK/staged"
    if ! command -v hyperfine >/dev/null; then
        log "installing hyperfine (apt)"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine >/dev/null; } ||
            log "hyperfine: not installable; timing with a Python loop"
    fi
    SECRET="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["secret"]["value"])' \
        "$WORK/staged-manifest.json")"
    # name | timed command (run in $WORK/staged) | report command | report file
    STAGED_CMDS=(
        "mayfly|env MAYFLY_HOME=$MAYFLY_HOME_DIR $MAYFLY_BIN scan --staged --no-progress|env MAYFLY_HOME=$MAYFLY_HOME_DIR $MAYFLY_BIN scan --staged --no-progress --show-secrets --format json -o ../out-git/staged-mayfly.json|../out-git/staged-mayfly.json"
        "kingfisher|$KINGFISHER scan . --staged --no-validate --no-update-check --quiet|$KINGFISHER scan . --staged --no-validate --no-update-check --quiet --format json -o ../out-git/staged-kingfisher.json|../out-git/staged-kingfisher.json"
        "betterleaks|$BETTERLEAKS git . --staged --no-banner --silent --log-level error|$BETTERLEAKS git . --staged --no-banner --silent --log-level error -o ../out-git/staged-betterleaks.json|../out-git/staged-betterleaks.json"
    )
    [[ $HAVE_GITLEAKS == 1 ]] && STAGED_CMDS+=(
        "gitleaks|$GITLEAKS git . --staged --no-banner --log-level error|$GITLEAKS git . --staged --no-banner --log-level error --report-format json --report-path ../out-git/staged-gitleaks.json|../out-git/staged-gitleaks.json")
    wait_quiet || true
    (
        cd "$WORK/staged"
        git diff --cached --quiet && { log "nothing staged"; exit 1; }
        results=()
        for entry in "${STAGED_CMDS[@]}"; do
            IFS='|' read -r name cmd report_cmd report <<<"$entry"
            rm -f "$report"
            $report_cmd >/dev/null 2>&1 || true
            found=no
            [[ -f $report ]] && grep -qF "$SECRET" "$report" && found=yes
            log "staged: $name: $cmd (finds the staged secret: $found)"
            if command -v hyperfine >/dev/null; then
                hyperfine -N -i --style none --warmup 3 --runs "$STAGED_RUNS" \
                    --export-json "../timings-git/staged-$name.json" "$cmd" >/dev/null 2>&1
                python3 - "../timings-git/staged-$name.json" "$name" "$cmd" "$found" <<'EOF' >"../timings-git/staged-$name.row"
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
print(json.dumps({"tool": sys.argv[2], "command": sys.argv[3], "runs": len(r["times"]), "timer": "hyperfine",
                  "mean_ms": r["mean"] * 1e3, "min_ms": r["min"] * 1e3, "max_ms": r["max"] * 1e3,
                  "found": sys.argv[4]}))
EOF
            else
                python3 - "$name" "$cmd" "$found" "$STAGED_RUNS" <<'EOF' >"../timings-git/staged-$name.row"
import json, shlex, statistics, subprocess, sys, time
name, cmd, found, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
argv = shlex.split(cmd)
if argv[0] == "env":
    import os
    env = dict(os.environ); argv = argv[1:]
    while "=" in argv[0]:
        k, v = argv.pop(0).split("=", 1); env[k] = v
else:
    env = None
times = []
for i in range(runs + 3):
    t = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if i >= 3:
        times.append(time.perf_counter() - t)
print(json.dumps({"tool": name, "command": cmd, "runs": runs, "timer": "python loop",
                  "mean_ms": statistics.mean(times) * 1e3, "min_ms": min(times) * 1e3,
                  "max_ms": max(times) * 1e3, "found": found}))
EOF
            fi
            log "staged: $name: $(cat "../timings-git/staged-$name.row")"
        done
    )
    python3 - "$WORK" "$MAYFLY_BIN" "$KINGFISHER" "$BETTERLEAKS" "$GITLEAKS" <<'EOF'
import json, pathlib, sys
work = pathlib.Path(sys.argv[1])
m = json.loads((work / "staged-manifest.json").read_text())
rows = []
for name in ("mayfly", "kingfisher", "betterleaks", "gitleaks"):
    f = work / "timings-git" / f"staged-{name}.row"
    if f.exists():
        r = json.loads(f.read_text())
        for b in sys.argv[2:]:
            if b:
                r["command"] = r["command"].replace(b, pathlib.Path(b).name)
        r["command"] = " ".join(w for w in r["command"].split() if not w.startswith("MAYFLY_HOME=")).replace("env ", "")
        rows.append(r)
desc = (f"clone of the history, {m['files_staged']} staged files (+{m['lines_added']}/-{m['lines_deleted']} lines, "
        f"{m['files_in_index']} files in the index), one fake credential in {m['secret']['path']}")
(work / "staged.json").write_text(json.dumps({"description": desc, "results": rows}, indent=2) + "\n")
EOF
    echo "load average after the --staged runs: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$WORK/machine-git.txt"
fi

python3 "$BENCH/score_git.py" --work "$WORK"
