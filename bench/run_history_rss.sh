#!/usr/bin/env bash
# Mayfly history-memory benchmark: peak RSS of `mayfly scan --git` against
# the size of the history. For each size it builds a large project's
# history (make_history.py --large: topic branches merged every ~400
# commits, renames, three 4-6 MB files edited ~25 times) and runs
# bench/run_git.sh on it (Mayfly only by default), then prints one table:
# commits, blobs, inflated bytes, pack size, wall, CPU, peak RSS, recall and
# secrets found at their introducing commit.
#
# Usage: bench/run_history_rss.sh
# Environment:
#   BENCH_HISTORIES="10000 50000 100000"   history sizes (commits)
#   BENCH_TOOLS=mayfly     tools run on each history (see run_git.sh)
#   BENCH_RUNS=1           timed runs per tool and history
#   BENCH_SEED=20260101    seed of the histories
#   MAYFLY_BIN=path        Mayfly binary (default target/release/mayfly)
#   BENCH_WORK=dir         work folder (default bench/work); history N is
#                          built in <work>/history-N
# Results: <work>/results-history-rss.md, and each history's run_git.sh
# results in <work>/history-N/results-git.md.
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK="${BENCH_WORK:-$BENCH/work}"
HISTORIES="${BENCH_HISTORIES:-10000 50000 100000}"
mkdir -p "$WORK"

for commits in $HISTORIES; do
    printf '[bench-rss] history of %s commits\n' "$commits" >&2
    BENCH_WORK="$WORK/history-$commits" BENCH_COMMITS="$commits" BENCH_LARGE=1 BENCH_STAGED=0 \
        BENCH_TOOLS="${BENCH_TOOLS:-mayfly}" BENCH_RUNS="${BENCH_RUNS:-1}" BENCH_VENV="$WORK/venv" \
        "$BENCH/run_git.sh" >/dev/null
done

python3 - "$WORK" $HISTORIES <<'EOF' | tee "$WORK/results-history-rss.md"
import json, sys
from pathlib import Path

work, sizes = Path(sys.argv[1]), sys.argv[2:]
print("| commits | merges | renames | blobs | inflated GB | pack MiB | tool | wall s | CPU s | peak RSS MiB "
      "| recall | at introducing commit |")
print("| ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
for n in sizes:
    d = work / f"history-{n}"
    sm = json.loads((d / "history-manifest.json").read_text())["summary"]
    for line in (d / "results-git.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 11 and cells[0] not in ("tool", "---"):
            tool, _ver, wall, cpu, rss, recall, _found, at_commit = cells[:8]
            print(f"| {sm['commits']} | {sm['merges']} | {sm.get('renames', 'n/a')} | {sm['blobs']} "
                  f"| {sm['blob_bytes'] / 1e9:.2f} | {sm['size_pack_kib'] / 1024:.0f} | {tool} | {wall} | {cpu} "
                  f"| {rss} | {recall} | {at_commit} / {sm['secrets']} |")
EOF
