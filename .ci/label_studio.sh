#!/usr/bin/env bash
# Install, start and stop a throw-away Label Studio server for the `labelstudio` integration tests.
#
# Usage (from bash; `source` so that the exported variables reach the caller):
#
#   source .ci/label_studio.sh start   # installs label-studio into $LS_VENV if missing, starts it on
#                                      # 127.0.0.1 with a temp data dir, waits for /health, exports
#                                      # LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY, LABEL_STUDIO_PID,
#                                      # LABEL_STUDIO_DATA_DIR
#   source .ci/label_studio.sh stop    # kills the server's process group (by PID) and removes the data dir
#   source .ci/label_studio.sh pause   # kills the server but keeps its data dir (tests: "server down")
#   source .ci/label_studio.sh resume  # starts it again on the same port and data dir (~7 s)
#   bash .ci/label_studio.sh install   # only create the virtual environment
#
# Settings (environment): LS_VENV (default ~/.cache/activelab-ls-venv), LS_VERSION (1.23.2),
# LS_PORT (default: a free port), LS_START_TIMEOUT (seconds, default 300).
#
# The first start on a fresh database spends ~70 s in migrations. The script therefore keeps a
# migrated template data dir (admin user + token, nothing else) inside the venv and copies it for
# each run: later starts take ~7 s. No network is used apart from `pip install`; the update check
# and Sentry telemetry are switched off.

LS_VENV="${LS_VENV:-$HOME/.cache/activelab-ls-venv}"
LS_VERSION="${LS_VERSION:-1.23.2}"
LS_START_TIMEOUT="${LS_START_TIMEOUT:-300}"
LS_ADMIN_EMAIL="${LS_ADMIN_EMAIL:-admin@example.com}"

_ls_log() { echo "[label_studio.sh] $*" >&2; }

ls_install() {
    if [ -x "$LS_VENV/bin/label-studio" ] \
        && "$LS_VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('label-studio') != '$LS_VERSION')" 2>/dev/null; then
        return 0
    fi
    _ls_log "installing label-studio==$LS_VERSION into $LS_VENV (about 2 minutes, ~1 GB)"
    python3 -m venv "$LS_VENV" || return 1
    # (grep drops pip's notes about the machine's local package mirrors)
    "$LS_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "label-studio==$LS_VERSION" 2>&1 \
        | { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2
    [ "${PIPESTATUS[0]}" -eq 0 ] || { _ls_log "pip install label-studio==$LS_VERSION failed"; return 1; }
}

_ls_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# _ls_launch DATA_DIR PORT TOKEN PASSWORD -> starts the server in its own session; sets LABEL_STUDIO_PID
_ls_launch() {
    local data_dir="$1" port="$2" token="$3" password="$4"
    # Prefixed names win over bare USERNAME/PASSWORD/PORT/HOST, which are unset for safety.
    env -u HOST -u PORT -u USERNAME -u PASSWORD \
        LABEL_STUDIO_USERNAME="$LS_ADMIN_EMAIL" \
        LABEL_STUDIO_PASSWORD="$password" \
        LABEL_STUDIO_USER_TOKEN="$token" \
        LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true \
        LABEL_STUDIO_LATEST_VERSION_CHECK=false \
        SENTRY_DSN= FRONTEND_SENTRY_DSN= \
        setsid "$LS_VENV/bin/label-studio" start --no-browser --internal-host 127.0.0.1 -p "$port" \
        --data-dir "$data_dir" --enable-legacy-api-token \
        >>"$data_dir/server.log" 2>&1 </dev/null &
    LABEL_STUDIO_PID=$!
    echo "$LABEL_STUDIO_PID" >"$data_dir/server.pid"
}

# _ls_wait URL PID -> 0 once GET /health answers 200
_ls_wait() {
    local url="$1" pid="$2" waited=0
    while [ "$waited" -lt "$LS_START_TIMEOUT" ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            _ls_log "server exited during start-up"
            return 1
        fi
        if python3 - "$url/health" <<'EOF' 2>/dev/null; then
import sys, urllib.request
sys.exit(0 if urllib.request.urlopen(sys.argv[1], timeout=2).status == 200 else 1)
EOF
            return 0
        fi
        sleep 1
        waited=$((waited + 1))
    done
    _ls_log "no answer from $url/health after ${LS_START_TIMEOUT}s"
    return 1
}

_ls_kill_group() {
    local pid="$1" i
    [ -n "$pid" ] || return 0
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 20); do
        kill -0 -- "-$pid" 2>/dev/null || return 0
        sleep 0.5
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
}

# A migrated data dir with the admin user and its legacy token, made once per venv.
_ls_make_template() {
    local template="$LS_VENV/activelab-template" tmp port token password
    [ -f "$template/ready" ] && return 0
    tmp="$(mktemp -d)"
    port="$(_ls_free_port)"
    token="$(python3 -c 'import secrets; print(secrets.token_hex(20))')"
    password="$(python3 -c 'import secrets; print(secrets.token_hex(12))')"
    _ls_log "first start: migrating a fresh database (about 70 s)"
    _ls_launch "$tmp" "$port" "$token" "$password"
    local pid="$LABEL_STUDIO_PID"
    if ! _ls_wait "http://127.0.0.1:$port" "$pid"; then
        tail -n 30 "$tmp/server.log" >&2
        _ls_kill_group "$pid"
        return 1
    fi
    _ls_kill_group "$pid"
    rm -rf "$template" && mkdir -p "$template"
    cp -a "$tmp/." "$template/data"
    rm -f "$template/data/server.log" "$template/data/server.pid"
    printf '%s\n' "$token" >"$template/token"
    printf '%s\n' "$password" >"$template/password"
    touch "$template/ready"
    rm -rf "$tmp"
}

ls_start() {
    if [ -n "${LABEL_STUDIO_PID:-}" ] && kill -0 "$LABEL_STUDIO_PID" 2>/dev/null; then
        _ls_log "already running (PID $LABEL_STUDIO_PID) at $LABEL_STUDIO_URL"
        return 0
    fi
    ls_install || return 1
    _ls_make_template || return 1
    local template="$LS_VENV/activelab-template" port
    LABEL_STUDIO_DATA_DIR="$(mktemp -d)"
    cp -a "$template/data/." "$LABEL_STUDIO_DATA_DIR/"
    port="${LS_PORT:-$(_ls_free_port)}"
    local token password
    token="$(cat "$template/token")"
    password="$(cat "$template/password")"
    _ls_launch "$LABEL_STUDIO_DATA_DIR" "$port" "$token" "$password"
    if ! _ls_wait "http://127.0.0.1:$port" "$LABEL_STUDIO_PID"; then
        tail -n 30 "$LABEL_STUDIO_DATA_DIR/server.log" >&2
        ls_stop
        return 1
    fi
    export LABEL_STUDIO_URL="http://127.0.0.1:$port"
    export LABEL_STUDIO_API_KEY="$token"
    export LABEL_STUDIO_PID LABEL_STUDIO_DATA_DIR
    _ls_log "Label Studio $LS_VERSION up at $LABEL_STUDIO_URL (PID $LABEL_STUDIO_PID, data $LABEL_STUDIO_DATA_DIR)"
}

# The PID of the running server: the data dir's server.pid (kept current by resume), else $LABEL_STUDIO_PID.
_ls_pid() {
    if [ -n "${LABEL_STUDIO_DATA_DIR:-}" ] && [ -f "$LABEL_STUDIO_DATA_DIR/server.pid" ]; then
        cat "$LABEL_STUDIO_DATA_DIR/server.pid"
    else
        echo "${LABEL_STUDIO_PID:-}"
    fi
}

ls_pause() {
    _ls_kill_group "$(_ls_pid)"
}

ls_resume() {
    local template="$LS_VENV/activelab-template" port
    if [ -z "${LABEL_STUDIO_DATA_DIR:-}" ] || [ -z "${LABEL_STUDIO_URL:-}" ]; then
        _ls_log "resume needs LABEL_STUDIO_DATA_DIR and LABEL_STUDIO_URL from a previous start"
        return 1
    fi
    port="${LABEL_STUDIO_URL##*:}"
    _ls_launch "$LABEL_STUDIO_DATA_DIR" "$port" "$(cat "$template/token")" "$(cat "$template/password")"
    if ! _ls_wait "$LABEL_STUDIO_URL" "$LABEL_STUDIO_PID"; then
        tail -n 30 "$LABEL_STUDIO_DATA_DIR/server.log" >&2
        return 1
    fi
    export LABEL_STUDIO_PID
    _ls_log "Label Studio resumed at $LABEL_STUDIO_URL (PID $LABEL_STUDIO_PID)"
}

ls_stop() {
    _ls_kill_group "$(_ls_pid)"
    if [ -n "${LABEL_STUDIO_DATA_DIR:-}" ] && [ -d "$LABEL_STUDIO_DATA_DIR" ]; then
        rm -rf "$LABEL_STUDIO_DATA_DIR"
    fi
    unset LABEL_STUDIO_PID LABEL_STUDIO_URL LABEL_STUDIO_API_KEY LABEL_STUDIO_DATA_DIR
}

case "${1:-}" in
    install) ls_install ;;
    start) ls_start ;;
    stop) ls_stop ;;
    pause) ls_pause ;;
    resume) ls_resume ;;
    "") ;;  # sourced for the functions only
    *) _ls_log "unknown command '$1': use install, start, stop, pause or resume"; false ;;
esac
