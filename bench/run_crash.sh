#!/usr/bin/env bash
# Crash safety, many times over: the harness of `.ci/run` (the tests
# crash::sigkill_under_load_loses_nothing_on_{sqlite,postgres}) with more
# kills. Four clients start tasks, exchange tokens, revoke and end tasks
# while `mayfly serve` is killed with SIGKILL at random moments (50 to 400
# ms apart) and restarted on the same port; afterwards every task and token
# a client was answered for is checked (tasks still there, tokens active
# unless revoked, ended or expired, no revoked token back) and the audit
# chain is verified. Each backend prints one line with what it received.
#
# Usage: bench/run_crash.sh        (PostgreSQL on 127.0.0.1:5432, trust auth)
# Environment:
#   BENCH_KILLS=100    SIGKILLs per backend (.ci/run: 20)
set -euo pipefail
cd "$(dirname "$0")/.."
export MAYFLY_CRASH_KILLS="${BENCH_KILLS:-100}"
cargo test --locked -p mayfly --test cli -- --nocapture --test-threads 1 \
  crash::sigkill_under_load 2>&1 | grep -E '^crash harness|^test |test result|panicked'
