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

# A real `kiln serve` on loopback (or ADDR) with a worker and an admin token.
# start_serve DATA_DIR PORT [ADDR] [extra config lines]
start_serve() {
    local data=$1 port=$2 addr=${3:-127.0.0.1}
    mkdir -p "$data"
    if [ ! -f "$data/worker.token" ]; then
        "$KILN_BIN" token create --role worker --name test-workers --data "$data/var" >"$data/worker.token" 2>/dev/null || fail "token create"
        "$KILN_BIN" token create --role admin --name test-admin --data "$data/var" >"$data/admin.token" 2>/dev/null || fail "token create"
        printf 'heartbeat_s: %s\nlost_after_s: %s\n%s\n' "${HB_S:-1}" "${LOST_S:-4}" "${SERVE_EXTRA:-}" >"$data/serve.yaml"
    fi
    ${SERVE_PREFIX:-} "$KILN_BIN" serve --listen "$addr:$port" --data "$data/var" --config "$data/serve.yaml" \
        >>"$TMP/serve.log" 2>&1 &
    SERVE_PID=$!
    PIDS+=("$SERVE_PID")
    SERVE_URL=http://$addr:$port
    ADMIN=$(cat "$data/admin.token")
    WTOKEN=$(cat "$data/worker.token")
    wait_for 15 ${SERVE_PREFIX:-} curl -sf "$SERVE_URL/healthz" || fail "kiln serve did not start"
}

api() { # api METHOD PATH [BODY]
    ${SERVE_PREFIX:-} curl -s -X "$1" -H "Authorization: Bearer $ADMIN" "$SERVE_URL/api/v1$2" ${3:+-d "$3"}
}
sjob() { api GET "/jobs/$1"; }
sstate_is() { [ "$(jget "$(sjob "$1")" 'd["state"]')" = "$2" ]; }
ssubmit() { jget "$(api POST /jobs "$1")" 'd["jobs"][0]["id"]'; }
