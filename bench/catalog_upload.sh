#!/usr/bin/env bash
# Upload throughput of the embedded catalog over loopback: `kiln catalog push`
# (hash the file, ask the server "have?", stream it with the digest in the
# URL, publish) against plain `curl -T` of the same file to the same upload
# endpoint of the same server, in the same run, alternating ROUNDS times.
# Then re-publishing the same artifact must transfer nothing.
#   bench/catalog_upload.sh [SIZE_MIB (1024)] [ROUNDS (3)]
# Needs build/kiln (make). Prints one line per run and the ratio.
set -eu
cd "$(dirname "$0")/.."
KILN=${KILN_BIN:-$PWD/build/kiln}
MIB=${1:-1024}
ROUNDS=${2:-3}
W=$(mktemp -d /tmp/kiln-bench.XXXXXX)
SP=
cleanup() {
    [ -n "$SP" ] && kill "$SP" 2>/dev/null && wait "$SP" 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT
D=$W/data
KILN_CATALOG_TOKEN=tok "$KILN" catalog serve --data "$D" --port 0 --port-file "$W/port" 2>"$W/serve.log" &
SP=$!
for _ in $(seq 50); do [ -s "$W/port" ] && break; sleep 0.1; done
U=http://127.0.0.1:$(cat "$W/port")
head -c $((MIB * 1024 * 1024)) /dev/urandom >"$W/art"
bytes=$((MIB * 1024 * 1024))
dig=sha256:$(sha256sum "$W/art" | cut -d' ' -f1)
now() { date +%s.%N; }
mbps() { python3 -c "print(f'{$bytes/1048576/($2-$1):.0f}')"; }
reset() { "$KILN" catalog gc --data "$D" --grace 0 >/dev/null; }
best_curl=0 best_kiln=0
run_curl() {
    reset; sync
    t0=$(now)
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer tok" -T "$W/art" "$U/api/v1/catalog/blobs/$dig")
    t1=$(now)
    [ "$code" = 201 ] || { echo "curl upload failed: $code"; exit 1; }
    c=$(mbps "$t0" "$t1")
}
# $1 = extra push args: "--digest D" is what the worker does (export hashed
# the NAR while dumping it); without it push hashes the file first.
run_kiln() {
    reset; sync
    t0=$(now)
    KILN_TOKEN=tok "$KILN" catalog push "$W/art" --server "$U" --name bench --version "r$r" "$@" >"$W/push.log"
    t1=$(now)
    grep -q "bytes sent" "$W/push.log" || { cat "$W/push.log"; exit 1; }
    sqlite3 "$D/catalog/catalog.db" "delete from entries where name='bench'"
    mbps "$t0" "$t1"
}
best_curl=0 best_kd=0 best_kh=0
for r in $(seq "$ROUNDS"); do
    # alternate the order so page cache and writeback favour nobody
    if [ $((r % 2)) -eq 1 ]; then run_curl; kd=$(run_kiln --digest "$dig"); kh=$(run_kiln)
    else kh=$(run_kiln); kd=$(run_kiln --digest "$dig"); run_curl; fi
    echo "round $r: curl -T ${c} MiB/s | kiln push --digest ${kd} MiB/s | kiln push (hashing first) ${kh} MiB/s"
    [ "$c" -gt "$best_curl" ] && best_curl=$c
    [ "$kd" -gt "$best_kd" ] && best_kd=$kd
    [ "$kh" -gt "$best_kh" ] && best_kh=$kh
done
ratio() { python3 -c "print(f'{$1/$best_curl:.2f}')"; }
echo "best of $ROUNDS (${MIB} MiB): curl -T ${best_curl} MiB/s; kiln push --digest ${best_kd} MiB/s (ratio $(ratio "$best_kd")); kiln push hashing first ${best_kh} MiB/s (ratio $(ratio "$best_kh"))"
# Re-publish: the blob is there, so nothing is sent.
reset
KILN_TOKEN=tok "$KILN" catalog push "$W/art" --server "$U" --name bench --version final >/dev/null
t0=$(now)
KILN_TOKEN=tok "$KILN" catalog push "$W/art" --server "$U" --name bench --version final >"$W/again.log"
t1=$(now)
grep -q "unchanged.*already had the bytes" "$W/again.log" || { cat "$W/again.log"; exit 1; }
echo "re-publish of the same ${MIB} MiB artifact: $(python3 -c "print(f'{$t1-$t0:.2f}')") s, 0 bytes of body sent ($(cat "$W/again.log"))"
"$KILN" catalog verify --data "$D" | tail -1
