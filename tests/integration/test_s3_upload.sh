#!/usr/bin/env bash
# S3 target against a real S3-compatible server on loopback: s3rver (npm)
# stores the objects; s3rver does not check SigV4 itself, so a small proxy in
# front of it recomputes every request's signature with the independent
# `aws4` npm signer and checks x-amz-content-sha256 against the body, and
# answers 403 SignatureDoesNotMatch / XAmzContentSHA256Mismatch like AWS
# does. Cases: a single PUT, a multipart upload
# (5 parts), a wrong secret key (clear 403 error), an unreachable endpoint
# (retries with backoff, then a clear error). Objects are compared byte for
# byte with the originals in s3rver's store.
set -u
: "${KILN_BIN:?}" "${KILN_SRC:?}"
command -v node >/dev/null || { echo "SKIP node is not installed"; exit 77; }
NM=${S3RVER_DIR:-$KILN_SRC/build/npm}
if [ ! -d "$NM/node_modules/s3rver" ] || [ ! -d "$NM/node_modules/aws4" ]; then
    mkdir -p "$NM"
    (cd "$NM" && timeout 120 npm install --no-audit --no-fund s3rver@3 aws4@1 >/dev/null 2>&1) ||
        { echo "SKIP cannot npm install s3rver and aws4"; exit 77; }
fi
W=$(mktemp -d /tmp/kiln-s3.XXXXXX)
NP=
cleanup() {
    [ -n "$NP" ] && kill "$NP" 2>/dev/null && wait "$NP" 2>/dev/null
    rm -rf "$W"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; [ -f "$W/s3rver.log" ] && tail -20 "$W/s3rver.log"; exit 1; }
mkdir -p "$W/store"
cat >"$W/s3.js" <<'JS'
const S3rver = require('s3rver');
const aws4 = require('aws4');
const crypto = require('crypto');
const http = require('http');
const fs = require('fs');
const [dir, portFile] = process.argv.slice(2);
const creds = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
function s3err(res, code, msg) {
  res.writeHead(403, { 'Content-Type': 'application/xml' });
  res.end(`<?xml version="1.0"?><Error><Code>${code}</Code><Message>${msg}</Message></Error>`);
}
new S3rver({ port: 0, address: '127.0.0.1', silent: false, directory: dir,
             configureBuckets: [{ name: 'kiln-artifacts' }] })
  .run().then(a => {
    const backend = a.port;
    const proxy = http.createServer((req, res) => {
      const chunks = [];
      req.on('data', c => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        const auth = req.headers['authorization'] || '';
        const m = /SignedHeaders=([^,]+),Signature=([0-9a-f]{64})/.exec(auth);
        if (!m) return s3err(res, 'AccessDenied', 'no SigV4 Authorization header');
        const headers = {};
        for (const h of m[1].split(';')) if (h !== 'host') headers[h] = req.headers[h];
        const opts = { host: req.headers.host, path: req.url, method: req.method,
                       service: 's3', region: 'us-east-1', headers };
        aws4.sign(opts, creds);
        const want = /Signature=([0-9a-f]{64})/.exec(opts.headers.Authorization)[1];
        if (want !== m[2]) {
          console.error('signature mismatch for', req.method, req.url);
          return s3err(res, 'SignatureDoesNotMatch', 'The request signature we calculated does not match');
        }
        const ph = req.headers['x-amz-content-sha256'];
        if (ph !== 'UNSIGNED-PAYLOAD' && ph !== crypto.createHash('sha256').update(body).digest('hex'))
          return s3err(res, 'XAmzContentSHA256Mismatch', 'payload hash does not match the body');
        console.error('verified SigV4', req.method, req.url);
        const f = http.request({ host: '127.0.0.1', port: backend, method: req.method,
                                 path: req.url, headers: req.headers }, r => {
          res.writeHead(r.statusCode, r.headers);
          r.pipe(res);
        });
        f.on('error', e => { res.writeHead(502); res.end(String(e)); });
        f.end(body);
      });
    });
    proxy.listen(0, '127.0.0.1', () => fs.writeFileSync(portFile, String(proxy.address().port)));
  })
  .catch(e => { console.error(e); process.exit(1); });
JS
NODE_PATH="$NM/node_modules" node "$W/s3.js" "$W/store" "$W/port" >"$W/s3rver.log" 2>&1 &
NP=$!
for _ in $(seq 100); do [ -s "$W/port" ] && break; sleep 0.1; done
PORT=$(cat "$W/port" 2>/dev/null) || fail "s3rver did not start"
EP=http://127.0.0.1:$PORT
export KILN_S3_ACCESS_KEY=S3RVER KILN_S3_SECRET_KEY=S3RVER

head -c $((1024 * 1024 + 17)) /dev/urandom >"$W/small.bin"
head -c $((23 * 1024 * 1024 + 5)) /dev/urandom >"$W/big.bin"
"$KILN_BIN" catalog s3-put "$W/small.bin" "vllm/1.0/small.bin" --endpoint "$EP" --bucket kiln-artifacts \
    >"$W/put1.log" 2>&1 || { cat "$W/put1.log"; fail "single PUT"; }
grep -q "^uploaded s3://kiln-artifacts/vllm/1.0/small.bin" "$W/put1.log" || fail "single PUT output: $(cat "$W/put1.log")"
"$KILN_BIN" catalog s3-put "$W/big.bin" "vllm/1.0/big file.bin" --endpoint "$EP" --bucket kiln-artifacts \
    --part-size $((5 * 1024 * 1024)) --threshold $((8 * 1024 * 1024)) >"$W/put2.log" 2>&1 ||
    { cat "$W/put2.log"; fail "multipart upload"; }
grep -q "uploaded (multipart)" "$W/put2.log" || fail "not multipart: $(cat "$W/put2.log")"
grep -q "s3: 24117253/24117253 bytes" "$W/put2.log" || fail "no final progress line"
# s3rver keeps each object as <key>._S3rver_object under the bucket dir.
obj() { find "$W/store/kiln-artifacts" -name "$1._S3rver_object" | head -1; }
o1=$(obj small.bin) o2=$(obj "big file.bin")
[ -n "$o1" ] && cmp -s "$o1" "$W/small.bin" || fail "small object differs"
[ -n "$o2" ] && cmp -s "$o2" "$W/big.bin" || fail "multipart object differs"
grep -q '"-5' "$(dirname "$o2")/big file.bin._S3rver_metadata.json" 2>/dev/null ||
    grep -rq -- '-5"' "$W/store/kiln-artifacts" || echo "note: could not confirm the 5-part ETag"

# Wrong secret: s3rver refuses the signature; the error names it.
KILN_S3_SECRET_KEY=wrong "$KILN_BIN" catalog s3-put "$W/small.bin" x.bin --endpoint "$EP" \
    --bucket kiln-artifacts >"$W/bad.log" 2>&1 && fail "wrong secret accepted"
grep -q "403 SignatureDoesNotMatch" "$W/bad.log" || fail "unclear auth error: $(cat "$W/bad.log")"
[ -z "$(obj x.bin)" ] || fail "object stored despite the bad signature"
# Bad key names are refused before any transfer.
"$KILN_BIN" catalog s3-put "$W/small.bin" "../escape" --endpoint "$EP" --bucket kiln-artifacts \
    >"$W/key.log" 2>&1 && fail "bad key accepted"
grep -q "S3 key must be" "$W/key.log" || fail "unclear key error"
# Unreachable endpoint: retried with backoff (200+400+800+1600 ms), then a clear error.
start=$(date +%s%N)
"$KILN_BIN" catalog s3-put "$W/small.bin" y.bin --endpoint http://127.0.0.1:1 --bucket b \
    >"$W/down.log" 2>&1 && fail "unreachable endpoint succeeded"
ms=$((($(date +%s%N) - start) / 1000000))
grep -q "Couldn't connect\|Could not connect\|onnection refused" "$W/down.log" || fail "unclear network error: $(cat "$W/down.log")"
[ "$ms" -ge 2900 ] || fail "no backoff between retries (${ms} ms)"
# The publisher: a catalog entry goes to S3 under a templated key (multipart,
# parts hashed on the thread pool) and to a command target, both from config.
D=$W/data
"$KILN_BIN" catalog publish "$W/big.bin" --name vllm-sm90 --version 2.0 --data "$D" \
    --meta '{"recipe":"vllm","branch":"main","sm":"90"}' >/dev/null || fail "catalog publish"
cat >"$W/targets.json" <<JSON
{"targets": [
  {"type": "s3", "match": {"recipe": "vllm", "branch": ["main", "release-*"]},
   "endpoint": "$EP", "bucket": "kiln-artifacts", "key": "{recipe}/{name}/{version}/{hex}",
   "part_size": 5242880, "multipart_threshold": 8388608},
  {"type": "s3", "match": {"branch": "dev"}, "endpoint": "$EP", "bucket": "kiln-artifacts"},
  {"type": "command", "command": "echo published {name} {version} {sm} > $W/cmd.out"}
]}
JSON
"$KILN_BIN" catalog targets 1 --config "$W/targets.json" --data "$D" >"$W/targets.log" 2>&1 ||
    { cat "$W/targets.log"; fail "publish targets"; }
grep -q "target 0 (s3): ok: uploaded (multipart)" "$W/targets.log" || fail "s3 target: $(cat "$W/targets.log")"
grep -q "target 1" "$W/targets.log" && fail "the dev-only target ran"
grep -q "^published vllm-sm90 2.0 90$" "$W/cmd.out" || fail "command target output"
hex=$(sha256sum "$W/big.bin" | cut -d' ' -f1)
o3=$(obj "$hex")
[ -n "$o3" ] && cmp -s "$o3" "$W/big.bin" || fail "publisher's S3 object differs"
case "$o3" in */vllm/vllm-sm90/2.0/*) ;; *) fail "unexpected key path $o3" ;; esac

n=$(grep -c "verified SigV4" "$W/s3rver.log")
[ "$n" -ge 15 ] || fail "expected >= 15 verified requests, saw $n"
echo "PASS s3 ($n requests verified by aws4): single PUT, multipart (5 parts), SigV4 checked by aws4, bad secret/key/endpoint errors, publisher s3+command targets"
exit 0
