# Sourced by ./booking and ./run-tests: make .venv from the dev lockfile (requirements-dev.lock:
# the runtime, the demo's embedded servers and plots, the test and lint tools) when missing
# or stale. The production image installs requirements.lock, the runtime alone.
# Needs only Python 3.11+ (python3, or $PYTHON).

ensure_venv() {
    root=$1
    python=${PYTHON:-python3}
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "booking: Python 3.11 or newer is required (tried '$python'; set PYTHON to choose)" >&2
        exit 2
    fi
    stamp="$root/.venv/.installed"
    want=$(cat "$root/requirements-dev.lock" "$root/pyproject.toml" | "$python" -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi
    echo "booking: setting up $root/.venv from requirements-dev.lock (first run takes a minute)" >&2
    "$python" -m venv "$root/.venv"
    "$root/.venv/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes -r "$root/requirements-dev.lock"
    "$root/.venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e "$root"
    echo "$want" > "$stamp"
}
