#!/usr/bin/env bash
# Bad input to the API gets the right status and a JSON error, and the
# service keeps serving: malformed JSON, wrong types, unknown ids, oversized
# body and headers, bad methods, missing/invalid/too-small tokens, raw garbage.
set -u
. "$KILN_SRC/tests/integration/lib_serve.sh"
command -v curl >/dev/null || { echo "SKIP: curl not installed"; exit 77; }
T=$(mktemp -d /tmp/kiln-apierr-XXXXXX)
trap 'stop_serve; rm -rf "$T"' EXIT
D=$T/var
SUB=$("$KILN_BIN" token create --role submit --data "$D" 2>/dev/null)
RD=$("$KILN_BIN" token create --role read --data "$D" 2>/dev/null)
WK=$("$KILN_BIN" token create --role worker --data "$D" 2>/dev/null)
[ -n "$SUB" ] && [ -n "$RD" ] && [ -n "$WK" ] || fail "token create"
start_serve "$D" || fail "serve did not start"

alive() { curl -sf -m 5 "http://127.0.0.1:$PORT/healthz" | grep -q '"ok"' || fail "not serving after $1"; }
is_json_error() { echo "$1" | grep -q '"error":{"code":"[a-z_]*","message":"' || fail "$2: not a JSON error: $1"; }

r=$(req "$SUB" POST /jobs '{"name":"a",'); expect 400 "$r" "malformed JSON"; is_json_error "$r" malformed; alive malformed
echo "$r" | grep -q parse_error || fail "malformed JSON code: $r"
r=$(req "$SUB" POST /jobs '{"name":"a","command":"x","cores":"8"}'); expect 400 "$r" "wrong type"
echo "$r" | grep -q 'cores' || fail "wrong type names the field: $r"
r=$(req "$SUB" POST /jobs '{"name":"a","command":"x","ram_mb":-5}'); expect 400 "$r" "negative ram"
r=$(req "$SUB" POST /jobs '[1,2]'); expect 400 "$r" "array body"
r=$(req "$SUB" POST /jobs '{"name":"a","command":"x","wat":1}'); expect 400 "$r" "unknown key"
echo "$r" | grep -q 'wat' || fail "unknown key named: $r"
r=$(req "$SUB" POST /jobs ''); expect 400 "$r" "empty body"
r=$(req "$RD" GET /jobs/424242); expect 404 "$r" "unknown job"; is_json_error "$r" unknown
r=$(req "$RD" GET /jobs/x1); expect 404 "$r" "non-numeric id"
r=$(req "$SUB" POST /jobs/424242/cancel); expect 404 "$r" "cancel unknown"
# Worker calls need the credential that registration returns.
r=$(req "$WK" POST /workers/register '{"name":"we","cores":1,"ram_mb":1,"platform":"x86_64-linux"}')
expect 200 "$r" "register"
CW=$(echo "$r" | cut -d' ' -f2- | jfield credential)
[ -n "$CW" ] || fail "no credential: $r"
r=$(req "$CW" POST '/jobs/424242/report' '{"attempt":1}'); expect 404 "$r" "report unknown"
r=$(req "$CW" POST '/jobs/1/log?attempt=1' 'x'); expect 400 "$r" "log without offset"
r=$(req "$WK" POST '/jobs/1/log?attempt=1&offset=0' 'x'); expect 403 "$r" "registration token logs"
r=$(req "$RD" GET '/jobs?limit=abc'); expect 400 "$r" "bad limit"
r=$(req "$RD" DELETE /jobs); expect 405 "$r" "bad method"; is_json_error "$r" 405
r=$(req "$RD" PUT /jobs/1); expect 405 "$r" "PUT job"
r=$(req "$RD" GET /nothing/here); expect 404 "$r" "unknown path"
alive "bad paths"

# Auth: state changes without a token 401, wrong token 401, small role 403.
r=$(req "" POST /jobs '{"name":"a","command":"x"}'); expect 401 "$r" "no token"; is_json_error "$r" 401
r=$(req "kiln_deadbeef" POST /jobs '{"name":"a","command":"x"}'); expect 401 "$r" "malformed token"
r=$(req "kiln_$(printf '0%.0s' $(seq 48))" POST /jobs '{"name":"a","command":"x"}'); expect 401 "$r" "unknown token"
r=$(req "$RD" POST /jobs '{"name":"a","command":"x"}'); expect 403 "$r" "read token submits"
r=$(req "$WK" POST /jobs '{"name":"a","command":"x"}'); expect 403 "$r" "worker token submits"
r=$(req "$SUB" POST /workers/register '{"name":"w","cores":1,"ram_mb":1,"platform":"x86_64-linux"}'); expect 403 "$r" "submit registers"
r=$(req "$SUB" POST /workers/1/drain '{"drain":true}'); expect 403 "$r" "submit drains"
r=$(req "" GET /jobs); expect 401 "$r" "anonymous GET without allow_anonymous_read"
r=$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Basic Zm9vOmJhcg==' "$U/jobs"); [ "$r" = 401 ] || fail "basic auth: $r"
alive "auth"

# Oversized body (default limit 8 MiB) and headers (16 KiB).
head -c $((9 * 1024 * 1024)) /dev/zero | tr '\0' 'a' >"$T/big"
r=$(curl -s -o "$T/out" -w '%{http_code}' -X POST -H "Authorization: Bearer $SUB" --data-binary @"$T/big" "$U/jobs")
[ "$r" = 413 ] || fail "oversized body: $r $(cat "$T/out")"
grep -q '"error"' "$T/out" || fail "413 not JSON: $(cat "$T/out")"
alive "oversized body"
big=$(head -c 20000 /dev/zero | tr '\0' 'b')
r=$(curl -s -o "$T/out" -w '%{http_code}' -H "X-Big: $big" "$U/jobs")
[ "$r" = 431 ] || fail "oversized header: $r"
alive "oversized header"

# Raw garbage on the socket: 400 and the connection closes; still serving.
if exec 3<>"/dev/tcp/127.0.0.1/$PORT"; then
    printf 'NOT HTTP AT ALL\r\n\r\n' >&3
    line=$(timeout 5 head -1 <&3 || true)
    exec 3<&-
    echo "$line" | grep -q ' 400 ' || fail "garbage request: '$line'"
fi
alive "garbage"

# A valid submission still works after all that.
r=$(req "$SUB" POST /jobs '{"name":"ok","command":"true"}'); expect 201 "$r" "valid submit"
echo PASS
