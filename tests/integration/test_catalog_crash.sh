#!/usr/bin/env bash
# Crash safety of publishing: a kiln built with -DKILN_CRASH_POINTS kills
# itself with SIGKILL at each of 10 points of a publish (temp file created,
# mid-write, before fsync, before rename, after rename, before BEGIN, inside
# the transaction, after the insert, before COMMIT, after COMMIT). After each
# crash `kiln catalog verify` must be clean, a re-publish must succeed, and
# no name+version may exist twice. Then timed SIGKILLs hit a large publish.
set -u
: "${KILN_BIN:?}" "${KILN_SRC:?}"
BDIR=$(dirname "$KILN_BIN")
[ -f "$BDIR/libkiln.a" ] && [ -f "$BDIR/obj/cli/main.o" ] || { echo "SKIP build objects not found in $BDIR"; exit 77; }
W=$(mktemp -d /tmp/kiln-crash.XXXXXX)
trap 'rm -rf "$W"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
PKGS="libuv libgit2 libcurl sqlite3 yaml-0.1 jansson libcrypto libssl"
# The crash points exist only in this test binary, never in build/kiln.
# (When KILN_BIN is a sanitizer build, link the same way.)
crash_build() {
    cc -std=c11 -D_GNU_SOURCE -DKILN_CRASH_POINTS -I"$KILN_SRC" -O1 "$@" \
        $(pkg-config --cflags $PKGS) -c "$KILN_SRC/catalog/catalog.c" -o "$W/catalog_crash.o" &&
    cc "$@" -o "$W/kiln-crash" "$BDIR/obj/cli/main.o" "$W/catalog_crash.o" "$BDIR/libkiln.a" \
        $(pkg-config --libs $PKGS) -lhttp_parser -ldl -lpthread -lm
}
crash_build 2>/dev/null || crash_build -fsanitize=address,undefined || fail "cannot build the crash-point binary"
CK="$W/kiln-crash"
D="$W/data"
count_versions() {
    "$KILN_BIN" catalog ls --data "$D" --json --name "${2:-art}" --version "$1" | grep -c '^    "id":'
}
for n in 1 2 3 4 5 6 7 8 9 10; do
    head -c $((3 * 1024 * 1024 + n)) /dev/urandom >"$W/f$n"
    KILN_CRASH_AT=$n "$CK" catalog publish "$W/f$n" --name art --version "v$n" --data "$D" \
        --meta "{\"sm\":\"90\",\"point\":$n}" >"$W/c$n.log" 2>&1
    rc=$?
    [ $rc -eq 137 ] || { cat "$W/c$n.log"; fail "point $n: expected SIGKILL (137), got $rc"; }
    "$KILN_BIN" catalog verify --data "$D" >"$W/v$n.log" 2>&1 || { cat "$W/v$n.log"; fail "verify after crash at point $n"; }
    before=$(count_versions "v$n")
    if [ "$n" -le 9 ]; then [ "$before" -eq 0 ] || fail "point $n: entry visible after a crash before COMMIT"; fi
    if [ "$n" -eq 10 ]; then [ "$before" -eq 1 ] || fail "point 10: entry lost after COMMIT"; fi
    out=$("$KILN_BIN" catalog publish "$W/f$n" --name art --version "v$n" --data "$D" --meta "{\"sm\":\"90\",\"point\":$n}") ||
        fail "re-publish after crash at point $n"
    if [ "$n" -eq 10 ]; then
        echo "$out" | grep -q '^unchanged' || fail "point 10: re-publish was not a no-op: $out"
    else
        echo "$out" | grep -q '^published' || fail "point $n: re-publish: $out"
    fi
    [ "$(count_versions "v$n")" -eq 1 ] || fail "point $n: v$n published twice or not at all"
    # A different artifact under the same name+version is refused.
    head -c 100 /dev/urandom >"$W/other"
    nb=$(find "$D/catalog/blobs/sha256" -type f | wc -l)
    "$KILN_BIN" catalog publish "$W/other" --name art --version "v$n" --data "$D" >"$W/o.log" 2>&1 &&
        fail "point $n: a different digest under v$n was accepted"
    grep -q "already published with a different digest" "$W/o.log" || fail "unclear conflict error: $(cat "$W/o.log")"
    [ "$(find "$D/catalog/blobs/sha256" -type f | wc -l)" -eq "$nb" ] || fail "refused publish left a blob"
    echo "point $n: crashed, verify clean, re-published once"
done
"$KILN_BIN" catalog verify --data "$D" >/dev/null || fail "final verify"
"$KILN_BIN" catalog gc --data "$D" --grace 0 || fail "gc"
[ -z "$(ls -A "$D/catalog/blobs/tmp")" ] || fail "temp files left after gc"
nblobs=$(find "$D/catalog/blobs/sha256" -type f | wc -l)
[ "$nblobs" -eq 10 ] || fail "expected 10 blobs after gc, found $nblobs"
"$KILN_BIN" catalog verify --data "$D" --json | grep -q '"ok": true' || fail "verify after gc"

# Timed kills in the middle of a large publish (real process, no hooks).
head -c $((200 * 1024 * 1024)) /dev/zero | tr '\0' 'x' >"$W/big"
for delay in 0.05 0.2 0.4; do
    "$KILN_BIN" catalog publish "$W/big" --name big --version "1" --data "$D" >/dev/null 2>&1 &
    p=$!
    sleep "$delay"
    kill -9 "$p" 2>/dev/null
    wait "$p" 2>/dev/null
    "$KILN_BIN" catalog verify --data "$D" >"$W/vb.log" 2>&1 || { cat "$W/vb.log"; fail "verify after a timed kill ($delay s)"; }
done
"$KILN_BIN" catalog publish "$W/big" --name big --version 1 --data "$D" >/dev/null || fail "big publish"
"$KILN_BIN" catalog publish "$W/big" --name big --version 1 --data "$D" | grep -q '^unchanged' || fail "big re-publish"
[ "$(count_versions 1 big)" -eq 1 ] || fail "big published twice or not at all"
"$KILN_BIN" catalog verify --data "$D" >/dev/null || fail "verify at the end"
echo "PASS catalog crash: 10 crash points + 3 timed kills, verify clean, nothing published twice"
exit 0
