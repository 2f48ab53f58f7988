#!/usr/bin/env bash
# The catalog's HTTP endpoints on loopback (kiln catalog serve): streamed
# upload with the digest in the URL, publish, list filters, entry JSON,
# download with Range (206/416), and bad input that must leave the catalog
# unchanged: wrong digest, truncated upload (client disconnects), missing or
# wrong token, path-traversal names, a different digest under the same
# name+version, a tampered (wrongly signed) entry.
set -u
: "${KILN_BIN:?}" "${KILN_SRC:?}"
command -v curl >/dev/null && command -v python3 >/dev/null || { echo "SKIP curl/python3 missing"; exit 77; }
W=$(mktemp -d /tmp/kiln-cathttp.XXXXXX)
SP=
cleanup() {
    [ -n "$SP" ] && kill "$SP" 2>/dev/null && wait "$SP" 2>/dev/null
    rm -rf "$W"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; tail -5 "$W/serve.log"; exit 1; }
D=$W/data
KILN_CATALOG_TOKEN=tok "$KILN_BIN" catalog serve --data "$D" --port 0 --port-file "$W/port" 2>"$W/serve.log" &
SP=$!
for _ in $(seq 50); do [ -s "$W/port" ] && break; sleep 0.1; done
U=http://127.0.0.1:$(cat "$W/port")
A=(-H "Authorization: Bearer tok")
snapshot() { (cd "$D/catalog/blobs" && find . -type f | sort); sqlite3 "$D/catalog/catalog.db" 'select count(*) from entries' 2>/dev/null; }

head -c 3000000 /dev/urandom >"$W/art"
dig=sha256:$(sha256sum "$W/art" | cut -d' ' -f1)
# have? -> 404, upload -> 201, again -> 200 existed (nothing transferred)
code=$(curl -s -o /dev/null -w '%{http_code}' -I "$U/api/v1/catalog/blobs/$dig")
[ "$code" = 404 ] || fail "HEAD before upload: $code"
code=$(curl -s -o "$W/r1" -w '%{http_code}' "${A[@]}" -T "$W/art" "$U/api/v1/catalog/blobs/$dig")
[ "$code" = 201 ] || fail "upload: $code $(cat "$W/r1")"
code=$(curl -s -o /dev/null -w '%{http_code}' -I "$U/api/v1/catalog/blobs/$dig")
[ "$code" = 200 ] || fail "HEAD after upload: $code"
pub() { curl -s -o "$W/pub" -w '%{http_code}' "${A[@]}" -H 'Content-Type: application/json' -d "$1" "$U/api/v1/catalog"; }
code=$(pub "{\"digest\":\"$dig\",\"meta\":{\"name\":\"vllm-sm90\",\"version\":\"1.0\",\"sm\":\"90\",\"isa\":\"avx512\",\"cuda\":\"12.9\",\"branch\":\"main\"}}")
[ "$code" = 201 ] || fail "publish: $code $(cat "$W/pub")"
code=$(pub "{\"digest\":\"$dig\",\"meta\":{\"name\":\"vllm-sm90\",\"version\":\"1.0\",\"sm\":\"90\",\"isa\":\"avx512\",\"cuda\":\"12.9\",\"branch\":\"main\"}}")
[ "$code" = 200 ] || fail "re-publish should be 200 (no-op): $code"
curl -sf "$U/api/v1/catalog?sm=90&isa=avx512" | grep -q '"name": *"vllm-sm90"' || fail "list filter match"
curl -sf "$U/api/v1/catalog?sm=80" | grep -q '"entries": *\[\]' || fail "list filter non-match"
curl -sf "$U/api/v1/catalog/1" | grep -q '"signature_ok": *true' || fail "entry json"
# download, full and ranged
curl -sf -o "$W/dl" "$U/api/v1/catalog/1/download" && cmp -s "$W/dl" "$W/art" || fail "download differs"
code=$(curl -s -o "$W/part" -w '%{http_code}' -r 1000-1999 "$U/api/v1/catalog/1/download")
[ "$code" = 206 ] && cmp -s "$W/part" <(tail -c +1001 "$W/art" | head -c 1000) || fail "range 206: $code"
code=$(curl -s -o "$W/tail" -w '%{http_code}' -r -10 "$U/api/v1/catalog/1/download")
[ "$code" = 206 ] && cmp -s "$W/tail" <(tail -c 10 "$W/art") || fail "suffix range"
code=$(curl -s -o /dev/null -w '%{http_code}' -r 5000000-5000001 "$U/api/v1/catalog/1/download")
[ "$code" = 416 ] || fail "unsatisfiable range: $code"

before=$(snapshot)
head -c 1000000 /dev/urandom >"$W/x"
xd=sha256:$(sha256sum "$W/x" | cut -d' ' -f1)
wrong=sha256:0000000000000000000000000000000000000000000000000000000000000000
# no token / wrong token
code=$(curl -s -o /dev/null -w '%{http_code}' -T "$W/x" "$U/api/v1/catalog/blobs/$xd")
[ "$code" = 401 ] || fail "upload without a token: $code"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer nope" -T "$W/x" "$U/api/v1/catalog/blobs/$xd")
[ "$code" = 401 ] || fail "upload with a wrong token: $code"
# wrong digest
code=$(curl -s -o "$W/e" -w '%{http_code}' "${A[@]}" -T "$W/x" "$U/api/v1/catalog/blobs/$wrong")
[ "$code" = 400 ] && grep -q "digest mismatch" "$W/e" || fail "wrong digest: $code $(cat "$W/e")"
code=$(curl -s -o "$W/e" -w '%{http_code}' "${A[@]}" -T "$W/x" "$U/api/v1/catalog/blobs/..%2f..%2fetc")
[ "$code" = 400 ] || fail "bad blob name: $code"
# truncated: announce 1000000 bytes, send 300000, disconnect
python3 - "$(cat "$W/port")" "$xd" <<'PY'
import socket, sys, time
port, d = int(sys.argv[1]), sys.argv[2]
s = socket.create_connection(("127.0.0.1", port))
s.sendall(f"PUT /api/v1/catalog/blobs/{d} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok\r\n"
          f"Content-Length: 1000000\r\n\r\n".encode() + b"y" * 300000)
time.sleep(0.3)
s.close()
PY
sleep 0.3
[ -z "$(ls -A "$D/catalog/blobs/tmp")" ] || fail "truncated upload left a temp file"
# path traversal and other bad metadata
for name in '../../etc/passwd' 'a/b' '..' '.hidden'; do
    code=$(pub "{\"digest\":\"$dig\",\"meta\":{\"name\":\"$name\",\"version\":\"1\"}}")
    [ "$code" = 400 ] && grep -q "name must be" "$W/pub" || fail "name '$name' got $code $(cat "$W/pub")"
done
code=$(pub "{\"digest\":\"$dig\",\"meta\":{\"name\":\"ok\",\"version\":\"../1\"}}")
[ "$code" = 400 ] || fail "bad version: $code"
code=$(pub "not json")
[ "$code" = 400 ] || fail "bad json: $code"
code=$(pub "{\"digest\":\"$wrong\",\"meta\":{\"name\":\"ok\",\"version\":\"1\"}}")
[ "$code" = 404 ] || fail "publish of a missing blob: $code"
# different digest under the same name+version -> 409
curl -s -o /dev/null "${A[@]}" -T "$W/x" "$U/api/v1/catalog/blobs/$xd"
code=$(pub "{\"digest\":\"$xd\",\"meta\":{\"name\":\"vllm-sm90\",\"version\":\"1.0\"}}")
[ "$code" = 409 ] && grep -q "different digest" "$W/pub" || fail "conflict: $code $(cat "$W/pub")"
"$KILN_BIN" catalog gc --data "$D" --grace 0 >/dev/null
[ "$(snapshot)" = "$before" ] || fail "bad input changed the catalog"
# a tampered entry (metadata changed behind the signature) is refused for download
sqlite3 "$D/catalog/catalog.db" "update entries set meta=replace(meta,'\"avx512\"','\"avx2\"') where id=1"
code=$(curl -s -o "$W/e" -w '%{http_code}' "$U/api/v1/catalog/1/download")
[ "$code" = 409 ] && grep -q "signature" "$W/e" || fail "tampered entry download: $code"
curl -sf "$U/api/v1/catalog/1" | grep -q '"signature_ok": *false' || fail "signature_ok false"
"$KILN_BIN" catalog verify --data "$D" >/dev/null && fail "verify passed a tampered entry"
echo "PASS catalog http: upload/publish/list/download+Range, bad input refused and leaves nothing"
exit 0
