#!/usr/bin/env bash
# make run: start a local farm with embedded defaults and show it working.
#   - data in ./var (SQLite store, logs, catalog)
#   - kiln serve on 127.0.0.1:8080 (KILN_LISTEN to change), page at /
#   - one local worker with this host's cores and RAM
#   - submits the demo recipe: its CPU-only variants first (cc, no GPU),
#     then the GPU ones (nix-build + nvcc per SM)
#   - once a CPU variant has been built, tested (its program runs) and
#     published, prints the nix-store -r command that fetches it from the
#     farm's Nix cache, signatures required
# Reads need no token when the server listens on loopback only (the default
# 127.0.0.1:8080): only this machine can reach it. Any other KILN_LISTEN
# gets no anonymous reads, and the printed command uses a read token in a
# netrc (docs/operations.md, "First run").
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

# Anonymous reads on loopback only: anyone who can reach a wider address
# would read the catalog, logs and cache without a token.
anon=""
case "$LISTEN" in
127.* | localhost:* | "[::1]:"*) anon=--allow-anonymous-read ;;
esac
"$KILN" serve --listen "$LISTEN" --data "$DATA" --recipes "$PWD/recipes" --web "$PWD/web" \
    $anon >>"$DATA/serve.log" 2>&1 &
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

  submitting the demo recipe: CPU-only variants first (cc), then the GPU
  ones (nix-build + nvcc per SM)...
EOT
# CPU variants first: with one worker, the first publish comes in about a
# minute instead of after every GPU build. KILN_DEMO_WHERE narrows both.
submitted=0
for dev in cpu gpu; do
    KILN_SERVER=$URL KILN_TOKEN=$ADMIN "$KILN" submit --recipe demo \
        --where "device=$dev${KILN_DEMO_WHERE:+,$KILN_DEMO_WHERE}" >>"$DATA/submit.log" 2>&1 &&
        submitted=1
done
[ $submitted = 1 ] || echo "  (demo submission failed, see $DATA/submit.log; the farm keeps running)"
if ! "$KILN" worker --detect --json 2>/dev/null | grep -q '"sm"'; then
    echo
    echo "  This host has no NVIDIA GPU: the builds run here, and each GPU variant's"
    echo "  selftest stage waits (it says so in 'kiln queue' and on the page) for a"
    echo "  worker whose GPU has the variant's SM. Start 'kiln worker' on a GPU host"
    echo "  with a worker token to run them. The CPU variants go all the way."
fi

# Until every CPU variant is done: say what happened to each, and print the
# command that fetches the first published one from the cache.
q() { KILN_SERVER=$URL KILN_TOKEN=$ADMIN "$KILN" "$@" 2>/dev/null; }
# field JSON KEY: the first "KEY": "value" in JSON (kiln prints one per line).
field() { printf '%s\n' "$1" | sed -n 's/^ *"'"$2"'": *"\([^"]*\)".*/\1/p' | head -1; }
print_fetch() { # NAME STOREPATH
    local key netrc=""
    key=$("$KILN" catalog key --data "$DATA" 2>/dev/null)
    if [ -z "$anon" ]; then
        READ=$(token read make-run-read)
        netrc=" --option netrc-file \$HOME/.config/kiln/netrc"
        cat <<EOT

  The cache needs a read token on $LISTEN (not loopback). Make a netrc once:
    mkdir -p ~/.config/kiln && printf 'machine %s login kiln password %s\\n' ${LISTEN%:*} $READ > ~/.config/kiln/netrc
EOT
    fi
    cat <<EOT

  published: $1 ($2)
  fetch it from the farm's Nix cache, signatures required (as root or a
  trusted Nix user, into this or any other Nix store):
    nix-store -r $2 --option substituters $URL/nix-cache --option trusted-public-keys $key --option require-sigs true$netrc
  then run it:  $2/bin/demo-cpu
  catalog:      $URL/#/catalog   (JSON: $URL/api/v1/catalog)
EOT
}
said=" " printed=""
while kill -0 "$serve_pid" 2>/dev/null; do
    ids=$(q queue --json --q demo-cpu- --limit 100 | sed -n 's/^      "id": *\([0-9]*\).*/\1/p' | sort -n)
    [ -n "$ids" ] || { sleep 1; continue; }
    left=0
    for id in $ids; do
        case "$said" in *" $id "*) continue ;; esac
        job=$(q show "$id" --json)
        name=$(field "$job" name) state=$(field "$job" state)
        case "$state" in
        succeeded)
            said="$said$id "
            path=$(printf '%s\n' "$job" | sed -n '/^  "outputs"/{n;s/^ *"\(\/nix\/store\/[^"]*\)".*/\1/p;}')
            if [ -z "$printed" ] && [ -n "$path" ]; then
                print_fetch "$name" "$path"
                printed=1
            else
                echo "  published: $name ($path)"
            fi
            ;;
        failed | cancelled | superseded)
            said="$said$id "
            echo "  $name $state: $(field "$job" reason) (kiln logs $id)"
            ;;
        *) left=$((left + 1)) ;;
        esac
    done
    [ $left = 0 ] && break
    sleep 1
done
# The GPU variants stay in the queue, each with the reason it waits.
echo
echo "  the demo's other variants now (kiln queue --recipe demo; WHY says what each waits for):"
q queue --recipe demo | sed -n '3,$p' | grep -v ' succeeded ' | sed 's/^/    /'
echo
echo "  Ctrl-C to stop."
wait "$serve_pid"
serve_pid=""
