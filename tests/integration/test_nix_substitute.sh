#!/usr/bin/env bash
# Real Nix as the client of kiln's binary cache: paths built with nix-build
# are exported (NAR + references + deriver) and published through the HTTP
# upload endpoint, deleted from the local store, then substituted back over
# loopback with require-sigs on. A tampered NAR and a tampered narinfo must
# be rejected by nix, and `kiln catalog verify` must report both.
set -u
: "${KILN_BIN:?}" "${KILN_SRC:?}"
for t in nix-build nix-store sqlite3 curl; do
    command -v $t >/dev/null || { echo "SKIP $t not installed"; exit 77; }
done
W=$(mktemp -d /tmp/kiln-nixsub.XXXXXX)
SP=
A= B= C= D=
cleanup() {
    [ -n "$SP" ] && kill "$SP" 2>/dev/null && wait "$SP" 2>/dev/null
    for p in $B $A $C $D; do nix-store --delete "$p" >/dev/null 2>&1; done
    rm -rf "$W"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; [ -f "$W/serve.log" ] && tail -20 "$W/serve.log"; exit 1; }
cd "$W"
nix-store --generate-binary-cache-key kiln-test-cache-1 sec pub || fail "cannot generate a key"
mkdir -p data/keys && cp sec data/keys/nix-cache.sec
tag="r$RANDOM$RANDOM"
cat >d.nix <<NIX
let
  mk = n: c: derivation { name = "kiln-it-\${n}-$tag"; system = builtins.currentSystem;
                          builder = "/bin/sh"; args = ["-c" c]; };
  a = mk "a" "echo dep-$tag > \$out";
in {
  a = a;
  b = mk "b" "/bin/mkdir \$out; echo uses \${a} > \$out/ref; echo payload-$tag > \$out/data";
  c = mk "c" "echo nar-tamper-$tag > \$out";
  d = mk "d" "echo info-tamper-$tag > \$out";
}
NIX
build() { nix-build d.nix -A "$1" --option substituters "" --option sandbox false --no-out-link 2>build.log | tail -1; }
A=$(build a) B=$(build b) C=$(build c) D=$(build d)
for p in "$A" "$B" "$C" "$D"; do [ -e "$p" ] || { cat build.log; fail "nix-build failed ($p)"; }; done
grep -q "$A" "$B/ref" || fail "b does not reference a"

KILN_CATALOG_TOKEN=tok "$KILN_BIN" catalog serve --data data --port 0 --port-file port 2>serve.log &
SP=$!
for _ in $(seq 50); do [ -s port ] && break; sleep 0.1; done
PORT=$(cat port) || fail "server did not start"
URL=http://127.0.0.1:$PORT
NIXOPTS=(--option substituters "$URL/nix-cache" --option trusted-public-keys "$(cat pub)"
         --option require-sigs true --option narinfo-cache-negative-ttl 0
         --option narinfo-cache-positive-ttl 0)

curl -sf "$URL/nix-cache/nix-cache-info" | grep -q '^StoreDir: /nix/store$' || fail "nix-cache-info"
# Without the token the upload is refused.
"$KILN_BIN" catalog export "$B" --server "$URL" && fail "export without a token was accepted"
for p in "$A" "$B" "$C" "$D"; do
    KILN_TOKEN=tok "$KILN_BIN" catalog export "$p" --server "$URL" --meta '{"recipe":"it"}' ||
        fail "export $p"
done
# Re-export transfers nothing (the blob is already there) and publishes nothing new.
out=$(KILN_TOKEN=tok "$KILN_BIN" catalog export "$B" --server "$URL") || fail "re-export"
echo "$out" | grep -q "unchanged.*already had the bytes" || fail "re-export was not a no-op: $out"
hb=$(basename "$B" | cut -c1-32)
curl -sf "$URL/nix-cache/$hb.narinfo" >b.narinfo || fail "narinfo for b"
grep -q "^References: $(basename "$A")$" b.narinfo || fail "narinfo references: $(cat b.narinfo)"
grep -q '^Sig: kiln-test-cache-1:' b.narinfo || fail "narinfo not signed"

# (1) delete b and a, substitute b (and a through the reference) back.
nix-store --delete "$B" "$A" >/dev/null 2>&1 || fail "cannot delete b and a"
[ -e "$B" ] && fail "b still in store"
nix-store -r "$B" "${NIXOPTS[@]}" >sub.log 2>&1 || { cat sub.log; fail "substitution of b failed"; }
grep -q "copying path '$B' from '$URL/nix-cache'" sub.log || fail "b was not copied from kiln: $(cat sub.log)"
[ "$(cat "$B/data")" = "payload-$tag" ] || fail "b content"
[ "$(cat "$A")" = "dep-$tag" ] || fail "a content"
nix-store --verify-path "$B" || fail "nix-store --verify-path b"

# (2) tampered NAR: same size, one byte changed on disk -> nix refuses.
nix-store --delete "$C" >/dev/null 2>&1 || fail "delete c"
hc=$(basename "$C" | cut -c1-32)
dig=$(sqlite3 data/catalog/catalog.db "select digest from narinfo where hashpart='$hc'")
hex=${dig#sha256:}
blob=data/catalog/blobs/sha256/${hex:0:2}/$hex
[ -f "$blob" ] || fail "blob for c missing"
python3 - "$blob" <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, 'rb').read())
i = b.rfind(b'nar-tamper')
b[i] = ord('N')
open(p, 'wb').write(bytes(b))
PY
if nix-store -r "$C" "${NIXOPTS[@]}" >c.log 2>&1; then fail "nix accepted a tampered NAR"; fi
grep -qi "hash mismatch" c.log || { cat c.log; fail "unexpected error for the tampered NAR"; }
nix-store --check-validity "$C" 2>/dev/null && fail "tampered c became a valid store path"

# (3) tampered narinfo: drop the signature's basis (NarSize/References) -> nix refuses.
nix-store --delete "$D" >/dev/null 2>&1 || fail "delete d"
hd=$(basename "$D" | cut -c1-32)
sqlite3 data/catalog/catalog.db "update narinfo set refs='$(basename "$A")' where hashpart='$hd'" ||
    fail "sqlite update"
if nix-store -r "$D" "${NIXOPTS[@]}" >d.log 2>&1; then fail "nix accepted a tampered narinfo"; fi
grep -qi "not signed" d.log || { cat d.log; fail "unexpected error for the tampered narinfo"; }
nix-store --check-validity "$D" 2>/dev/null && fail "tampered d became a valid store path"

# (4) an untrusted key is refused too.
nix-store --generate-binary-cache-key other-key-1 osec opub
nix-store --delete "$B" >/dev/null 2>&1
if nix-store -r "$B" --option substituters "$URL/nix-cache" --option trusted-public-keys "$(cat opub)" \
    --option require-sigs true --option narinfo-cache-positive-ttl 0 >e.log 2>&1; then
    fail "nix accepted a path signed by an untrusted key"
fi

# kiln's own verify sees both tamperings.
"$KILN_BIN" catalog verify --data data >verify.log 2>&1 && fail "verify passed on a tampered catalog"
grep -q "hashes to" verify.log || { cat verify.log; fail "verify missed the NAR"; }
grep -q "narinfo $hd: signature does not verify" verify.log || { cat verify.log; fail "verify missed the narinfo"; }
echo "PASS nix substitute: signed substitution works, tampered NAR/narinfo and untrusted key rejected"
exit 0
