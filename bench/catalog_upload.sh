#!/usr/bin/env bash
# Upload throughput of the embedded catalog over loopback: `kiln catalog push`
# (hash the file, ask the server "have?", stream it with the digest in the
# URL, publish) against plain `curl -T` of the same file to the same upload
# endpoint of the same server, in the same run, alternating ROUNDS times.
# Then re-publishing the same artifact must transfer nothing.
#   bench/catalog_upload.sh [SIZE_MIB (1024)] [ROUNDS (3)]
# BENCH_DATA_PARENT=/dev/shm puts the server's data dir on tmpfs (takes the
# disk's fsync out of both measurements; the artifact stays in /tmp).
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
    rm -rf "$W" "$D"
}
trap cleanup EXIT
if [ -n "${BENCH_DATA_PARENT:-}" ]; then D=$(mktemp -d "$BENCH_DATA_PARENT/kiln-bench-data.XXXXXX"); else D=$W/data; fi
KILN_CATALOG_TOKEN=tok "$KILN" catalog serve --data "$D" --port 0 --port-file "$W/port" 2>"$W/serve.log" &
SP=$!
for _ in $(seq 50); do [ -s "$W/port" ] && break; sleep 0.1; done
U=http://127.0.0.1:$(cat "$W/port")
head -c $((MIB * 1024 * 1024)) /dev/urandom >"$W/art"
bytes=$((MIB * 1024 * 1024))
dig=sha256:$(sha256sum "$W/art" | cut -d' ' -f1)
now() { date +%s.%N; }
# server CPU (user+sys, seconds) so far: less noisy than wall time on a busy host
scpu() { awk -v t="$(getconf CLK_TCK)" '{printf "%.2f", ($14+$15)/t}' /proc/$SP/stat; }
mbps() { python3 -c "print(f'{$bytes/1048576/($2-$1):.0f}')"; }
reset() { "$KILN" catalog gc --data "$D" --grace 0 >/dev/null; }
best_curl=0 best_kiln=0
run_curl() {
    reset; sync
    s0=$(scpu)
    t0=$(now)
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer tok" -T "$W/art" "$U/api/v1/catalog/blobs/$dig")
    t1=$(now)
    [ "$code" = 201 ] || { echo "curl upload failed: $code"; exit 1; }
    c=$(mbps "$t0" "$t1")
    cc=$(python3 -c "print(f'{$(scpu)-$s0:.2f}')")
}
# $1 = extra push args: "--digest D" is what the worker does (export hashed
# the NAR while dumping it); without it push hashes the file first.
run_kiln() {
    reset; sync
    s0=$(scpu)
    t0=$(now)
    KILN_TOKEN=tok "$KILN" catalog push "$W/art" --server "$U" --name bench --version "r$r" "$@" >"$W/push.log"
    t1=$(now)
    grep -q "bytes sent" "$W/push.log" || { cat "$W/push.log"; exit 1; }
    sqlite3 "$D/catalog/catalog.db" "delete from entries where name='bench'"
    echo "$(mbps "$t0" "$t1") $(python3 -c "print(f'{$(scpu)-$s0:.2f}')")"
}
all_c= all_kd= all_kh=
for r in $(seq "$ROUNDS"); do
    # alternate the order so page cache and writeback favour nobody
    if [ $((r % 2)) -eq 1 ]; then run_curl; kd=$(run_kiln --digest "$dig"); kh=$(run_kiln)
    else kh=$(run_kiln); kd=$(run_kiln --digest "$dig"); run_curl; fi
    kdc=${kd#* } kd=${kd%% *} khc=${kh#* } kh=${kh%% *}
    echo "round $r: curl -T ${c} MiB/s (server cpu ${cc}s) | kiln push --digest ${kd} MiB/s (server cpu ${kdc}s) | kiln push hashing first ${kh} MiB/s (server cpu ${khc}s)"
    all_c="$all_c $c" all_kd="$all_kd $kd" all_kh="$all_kh $kh"
done
python3 - "$all_c" "$all_kd" "$all_kh" "$MIB" "$ROUNDS" <<'PY'
import statistics as st, sys
c, kd, kh = ([float(x) for x in a.split()] for a in sys.argv[1:4])
for label, f in (("median", st.median), ("best", max)):
    print(f"{label} of {sys.argv[5]} ({sys.argv[4]} MiB): curl -T {f(c):.0f} MiB/s; "
          f"kiln push --digest {f(kd):.0f} MiB/s (ratio {f(kd)/f(c):.2f}); "
          f"kiln push hashing first {f(kh):.0f} MiB/s (ratio {f(kh)/f(c):.2f})")
PY
# Re-publish: the blob is there, so nothing is sent.
reset
KILN_TOKEN=tok "$KILN" catalog push "$W/art" --server "$U" --name bench --version final >/dev/null
t0=$(now)
KILN_TOKEN=tok "$KILN" catalog push "$W/art" --server "$U" --name bench --version final --digest "$dig" >"$W/again.log"
t1=$(now)
grep -q "unchanged.*already had the bytes" "$W/again.log" || { cat "$W/again.log"; exit 1; }
t2=$(now)
KILN_TOKEN=tok "$KILN" catalog push "$W/art" --server "$U" --name bench --version final >"$W/again2.log"
t3=$(now)
grep -q "unchanged.*already had the bytes" "$W/again2.log" || { cat "$W/again2.log"; exit 1; }
echo "re-publish of the same ${MIB} MiB artifact: $(python3 -c "print(f'{$t1-$t0:.3f}')") s with the digest known (worker), $(python3 -c "print(f'{$t3-$t2:.2f}')") s hashing it first; 0 body bytes sent both times"
echo "($(cat "$W/again.log"))"
"$KILN" catalog verify --data "$D" | tail -1
