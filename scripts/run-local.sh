#!/usr/bin/env bash
# make run: start a local farm with embedded defaults and show it working.
#   - data in ./var (SQLite store, logs, catalog)
#   - kiln serve on 127.0.0.1:8080 (KILN_LISTEN to change), page at /
#   - one local worker with this host's cores and RAM
#   - submits the demo recipe (real nix-build + nvcc builds for several SMs)
# Ctrl-C stops the worker and the server cleanly.
set -u
cd "$(dirname "$0")/.."
KILN=${KILN_BIN:-$PWD/build/kiln}
DATA=${KILN_DATA:-$PWD/var}
LISTEN=${KILN_LISTEN:-127.0.0.1:8080}
URL="http://$LISTEN"
mkdir -p "$DATA"

token() { "$KILN" token create --data "$DATA" --role "$1" --name "$2" 2>/dev/null | grep -oE 'kiln_[0-9a-f]{48}' | head -1; }
ADMIN=$(token admin make-run-admin)
WORKER=$(token worker make-run-worker)
if [ -z "$ADMIN" ] || [ -z "$WORKER" ]; then
    echo "make run: could not create tokens in $DATA (see: $KILN token create --help)" >&2
    exit 1
fi

serve_pid=""
worker_pid=""
stop() {
    trap - INT TERM EXIT
    echo
    echo "stopping..."
    [ -n "$worker_pid" ] && kill -TERM "$worker_pid" 2>/dev/null
    [ -n "$worker_pid" ] && { sleep 1; kill -TERM "$worker_pid" 2>/dev/null; wait "$worker_pid" 2>/dev/null; }
    [ -n "$serve_pid" ] && kill -TERM "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null
    echo "stopped."
    exit 0
}
trap stop INT TERM EXIT

"$KILN" serve --listen "$LISTEN" --data "$DATA" --recipes "$PWD/recipes" --web "$PWD/web" \
    --allow-anonymous-read >>"$DATA/serve.log" 2>&1 &
serve_pid=$!
for _ in $(seq 1 50); do
    curl -fsS "$URL/healthz" >/dev/null 2>&1 && break
    if ! kill -0 "$serve_pid" 2>/dev/null; then
        echo "make run: kiln serve exited; last lines of $DATA/serve.log:" >&2
        tail -20 "$DATA/serve.log" >&2
        serve_pid=""
        exit 1
    fi
    sleep 0.2
done
"$KILN" worker --server "$URL" --token "$WORKER" --name "$(hostname)-local" \
    --work-dir "$DATA/work" --source-dir "$PWD" >>"$DATA/worker.log" 2>&1 &
worker_pid=$!

cat <<EOT

  kiln is running.
    page:         $URL/
    admin token:  $ADMIN
    logs:         $DATA/serve.log, $DATA/worker.log

  try:  export KILN_SERVER=$URL KILN_TOKEN=$ADMIN
        $KILN queue
        $KILN logs -f <id>

  submitting the demo recipe (nix-build + nvcc for several SMs)...
EOT
KILN_SERVER=$URL KILN_TOKEN=$ADMIN "$KILN" submit --recipe demo ${KILN_DEMO_WHERE:+--where "$KILN_DEMO_WHERE"} || \
    echo "  (demo submission failed; the farm keeps running)"
if ! "$KILN" worker --detect --json 2>/dev/null | grep -q '"sm"'; then
    echo
    echo "  This host has no NVIDIA GPU: the builds run here, and each variant's"
    echo "  selftest stage waits (it says so in 'kiln queue' and on the page) for a"
    echo "  worker whose GPU has the variant's SM. Start 'kiln worker' on a GPU host"
    echo "  with a worker token to run them."
fi
echo
echo "  Ctrl-C to stop."
wait "$serve_pid"
serve_pid=""
