# Shared helpers for the core integration tests (sourced, not run).
# start_serve DATA [ARGS...]: starts kiln serve on a free loopback port,
# sets SERVE_PID, PORT and U (API base URL). fixture NAME: see below.
: "${KILN_BIN:?set KILN_BIN}"
SERVE_PID=""

start_serve() {
    local data=$1
    shift
    : >"$data.serve.log"
    "$KILN_BIN" serve --listen 127.0.0.1:0 --data "$data" "$@" >>"$data.serve.log" 2>&1 &
    SERVE_PID=$!
    PORT=""
    for _ in $(seq 1 100); do
        PORT=$(sed -n 's/.*listening on .*(port \([0-9]*\)).*/\1/p' "$data.serve.log" | tail -1)
        [ -n "$PORT" ] && break
        kill -0 "$SERVE_PID" 2>/dev/null || { cat "$data.serve.log"; return 1; }
        sleep 0.05
    done
    [ -n "$PORT" ] || { echo "serve did not start"; cat "$data.serve.log"; return 1; }
    U=http://127.0.0.1:$PORT/api/v1
}

# fixture NAME: T, a fresh directory removed on exit (the worker and serve
# stopped first), D=$T/var, and in it a submit token SUB and a worker token
# WK.
fixture() {
    T=$(mktemp -d "/tmp/kiln-$1-XXXXXX")
    trap 'stop_worker; stop_serve; rm -rf "$T"' EXIT
    D=$T/var
    SUB=$("$KILN_BIN" token create --role submit --data "$D" 2>/dev/null)
    WK=$("$KILN_BIN" token create --role worker --data "$D" 2>/dev/null)
}

# start_worker NAME [ARGS...]: a real `kiln worker` named NAME against the
# serve started last, with the token WK, work dir $T/work, log
# $T/worker.log; sets WPID. ARGS come after the defaults, so they win.
WPID=""
start_worker() {
    local name=$1
    shift
    "$KILN_BIN" worker --server "http://127.0.0.1:$PORT" --token "$WK" --name "$name" \
        --cores 2 --ram 2G --work-dir "$T/work" --log-level warn "$@" >"$T/worker.log" 2>&1 &
    WPID=$!
}

stop_worker() {
    if [ -n "$WPID" ]; then
        kill -TERM "$WPID" 2>/dev/null
        wait "$WPID" 2>/dev/null
        WPID=""
    fi
}

stop_serve() {
    if [ -n "$SERVE_PID" ]; then
        kill -TERM "$SERVE_PID" 2>/dev/null
        wait "$SERVE_PID" 2>/dev/null
        SERVE_PID=""
    fi
}

# req TOKEN METHOD PATH [BODY] -> prints "STATUS BODY"
req() {
    local tok=$1 method=$2 path=$3 body=${4-}
    local auth=()
    [ -n "$tok" ] && auth=(-H "Authorization: Bearer $tok")
    if [ -n "$body" ]; then
        curl -s -m 20 -o /tmp/kiln-it-body.$$ -w '%{http_code}' -X "$method" "${auth[@]}" \
            -H 'Content-Type: application/json' --data-binary "$body" "$U$path"
    else
        curl -s -m 20 -o /tmp/kiln-it-body.$$ -w '%{http_code}' -X "$method" "${auth[@]}" "$U$path"
    fi
    printf ' '
    cat /tmp/kiln-it-body.$$ 2>/dev/null
    rm -f /tmp/kiln-it-body.$$
}

# Top-level-ish JSON field (first occurrence) of a string or number.
jfield() { grep -o "\"$1\":\(\"[^\"]*\"\|[-0-9.]*\|null\|true\|false\)" | head -1 | sed "s/\"$1\"://; s/\"//g"; }

fail() {
    echo "FAIL: $*"
    exit 1
}

# expect STATUS "STATUS BODY" what
expect() {
    local want=$1 got=$2 what=$3
    [ "${got%% *}" = "$want" ] || fail "$what: wanted $want, got: $got"
}

# register_worker BODY: POST /workers/register with the fixture's worker
# token; sets W (the worker's id) and WK (the credential it was issued,
# which the worker then acts with).
register_worker() {
    local r
    r=$(req "$WK" POST /workers/register "$1")
    expect 200 "$r" register
    W=$(echo "${r#* }" | jfield worker_id)
    WK=$(echo "${r#* }" | jfield credential)
    [ -n "$W" ] && [ -n "$WK" ] || fail "register gave no worker id or credential: $r"
}
