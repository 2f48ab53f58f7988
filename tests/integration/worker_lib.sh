# Shared helpers for tests/integration/test_worker_*.sh (sourced, not run).
# Every process started here is recorded and ended by pid in cleanup.
: "${KILN_BIN:?KILN_BIN must point to the built kiln}"
: "${KILN_SRC:?KILN_SRC must point to the repository}"
FAKE="$KILN_SRC/tests/integration/worker_fake_server.py"
PIDS=()
TMP=$(mktemp -d /tmp/kiln-wtest-XXXXXX)

cleanup_procs() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

fail() {
    echo "FAIL: $*"
    for f in "$TMP"/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -30 "$f"; }; done
    exit 1
}

# wait_for SECONDS CMD...: polls CMD every 0.1 s until it succeeds.
wait_for() {
    local t=$1; shift
    local end=$(( $(date +%s%N) + t * 1000000000 ))
    while [ "$(date +%s%N)" -lt "$end" ]; do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

# jq-free JSON field read: jget JSON-TEXT python-expression-on-d
jget() {
    python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"
}
