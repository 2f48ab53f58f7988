#!/usr/bin/env bash
# bench/page_100k.sh - the page with a large history in a real Chromium: a
# store filled with H succeeded jobs and Q queued (bench/lib/fill_jobs.sh),
# a fresh `kiln serve` on it, and headless Chromium (playwright-core of
# tests/browser) opening #/queue. Prints first paint / first contentful
# paint, the time until the page is usable (running, waiting and finished
# rows and the counts on screen), rows in the DOM, and the time from a click
# to its answer on screen: "Older" (the next history page) and the SM filter.
#
#   bash bench/page_100k.sh [H=100000] [Q=1000]
set -eu
H=${1:-100000}
Q=${2:-1000}
SRC=$(cd "$(dirname "$0")/.." && pwd)
KILN=${KILN_BIN:-$SRC/build/kiln}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
command -v node >/dev/null && [ -x "$CHROMIUM" ] || { echo "SKIP: node or $CHROMIUM missing"; exit 77; }
if [ ! -d "$SRC/tests/browser/node_modules/playwright-core" ]; then
    (cd "$SRC/tests/browser" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --prefer-offline) >&2
fi
T=$(mktemp -d "${TMPDIR:-/tmp}/kiln-page-XXXXXX")
SPID=""
cleanup() {
    [ -n "$SPID" ] && { kill -TERM "$SPID" 2>/dev/null; wait "$SPID" 2>/dev/null; }
    rm -rf "$T"
}
trap cleanup EXIT
. "$SRC/bench/lib/fill_jobs.sh"
"$KILN" token create --role submit --data "$T/d" >/dev/null 2>&1 # creates the schema
fill "$T/d/kiln.db" "$H" "$Q"
"$KILN" serve --listen 127.0.0.1:0 --data "$T/d" --web "$SRC/web" --allow-anonymous-read \
    >"$T/serve.log" 2>&1 &
SPID=$!
PORT=""
for _ in $(seq 1 400); do
    PORT=$(sed -n 's/.*listening on .*(port \([0-9]*\)).*/\1/p' "$T/serve.log" | tail -1)
    [ -n "$PORT" ] && break
    sleep 0.05
done
[ -n "$PORT" ] || { cat "$T/serve.log"; exit 1; }
echo "page: H=$H Q=$Q load=\"$(cut -d' ' -f1-3 /proc/loadavg)\""
CHROMIUM=$CHROMIUM node "$SRC/bench/page_100k.mjs" "http://127.0.0.1:$PORT" "$((H + Q))"
