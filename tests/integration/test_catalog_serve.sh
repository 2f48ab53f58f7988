#!/usr/bin/env bash
# The catalog inside the full service: `kiln serve` routes /api/v1/catalog and
# /nix-cache to kiln_catalog_http. A worker token exports a Nix path through
# it; anonymous uploads get 401; real nix substitutes the path back with
# require-sigs using the key `kiln catalog key` prints. Skips where
# `kiln serve` is not built yet (the catalog branch alone).
set -u
: "${KILN_BIN:?}" "${KILN_SRC:?}"
"$KILN_BIN" serve --help 2>&1 | grep -q -- "--allow-anonymous-read" || { echo "SKIP kiln serve not available in this build"; exit 77; }
for t in nix-build nix-store curl python3; do command -v $t >/dev/null || { echo "SKIP $t missing"; exit 77; }; done
W=$(mktemp -d /tmp/kiln-catserve.XXXXXX)
SP= P=
cleanup() {
    [ -n "$SP" ] && kill "$SP" 2>/dev/null && wait "$SP" 2>/dev/null
    [ -n "$P" ] && nix-store --delete "$P" >/dev/null 2>&1
    rm -rf "$W"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; tail -20 "$W/serve.log"; exit 1; }
cd "$W"
# Writing to the catalog by hand is an admin's (issue 16).
TOK=$("$KILN_BIN" token create --role admin --data "$W/var" 2>/dev/null | grep -o 'kiln_[0-9a-f]*' | head -1)
[ -n "$TOK" ] || fail "cannot create an admin token"
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
"$KILN_BIN" serve --listen 127.0.0.1:$PORT --data "$W/var" --allow-anonymous-read >serve.log 2>&1 &
SP=$!
U=http://127.0.0.1:$PORT
for _ in $(seq 100); do curl -sf "$U/healthz" >/dev/null && break; sleep 0.1; done
tag=r$RANDOM$RANDOM
cat >d.nix <<NIX
derivation { name = "kiln-serve-$tag"; system = builtins.currentSystem; builder = "/bin/sh";
             args = ["-c" "echo served-$tag > \$out"]; }
NIX
P=$(nix-build d.nix --option substituters '' --option sandbox false --no-out-link 2>/dev/null | tail -1)
[ -e "$P" ] || fail "nix-build"
code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT --data x "$U/api/v1/catalog/blobs/sha256:2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881")
[ "$code" = 401 ] || fail "anonymous upload got $code"
KILN_TOKEN=$TOK "$KILN_BIN" catalog export "$P" --server "$U" --meta '{"recipe":"demo","branch":"main"}' || fail "export"
curl -sf "$U/api/v1/catalog?recipe=demo" | grep -q "kiln-serve-$tag" || fail "entry not listed"
KEY=$("$KILN_BIN" catalog key --data "$W/var") || fail "catalog key"
nix-store --delete "$P" >/dev/null 2>&1 || fail "delete"
nix-store -r "$P" --option substituters "$U/nix-cache" --option trusted-public-keys "$KEY" \
    --option require-sigs true --option narinfo-cache-positive-ttl 0 >sub.log 2>&1 || { cat sub.log; fail "substitute"; }
[ "$(cat "$P")" = "served-$tag" ] || fail "content"
echo "PASS catalog in kiln serve: export with an admin token, 401 anonymous, nix substitutes with require-sigs"
exit 0
