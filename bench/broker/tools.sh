# The tools the broker benchmarks share, sourced by bench/run_broker.sh and
# bench/run_soak.sh: the load generators (apt) and a Python venv.

# bench_tools VENV PKG...: installs wrk, hey and curl if missing, creates
# VENV if missing, installs each PKG ("name" or "name==version") that is not
# there at that version, and sets PY to the venv's python. Needs `log`.
bench_tools() {
    local venv="$1" pkg version missing=()
    shift
    for tool in wrk hey curl; do command -v "$tool" >/dev/null || missing+=("$tool"); done
    if ((${#missing[@]})); then
        log "installing ${missing[*]} (apt)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    if [[ ! -x "$venv/bin/python" ]]; then
        log "creating venv $venv"
        python3 -m venv "$venv"
    fi
    PY="$venv/bin/python"
    for pkg in "$@"; do
        # pip show fails for a package not installed yet: that is the case
        # to install, not an error (set -e and pipefail are on).
        version="$("$PY" -m pip show "${pkg%%==*}" 2>/dev/null | awk '/^Version:/{print $2}' || true)"
        [[ -n "$version" && ( "$pkg" != *==* || "$version" == "${pkg##*==}" ) ]] && continue
        log "installing $pkg (pip)"
        "$PY" -m pip install -q --disable-pip-version-check "$pkg"
    done
}
