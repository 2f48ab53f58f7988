#!/usr/bin/env bash
# Transport security end to end: kiln serve terminates TLS itself; a worker
# and the CLI verify its certificate against a CA file and run a job; a
# client without the CA is refused (certificate not trusted); plain HTTP to
# the TLS port gets no answer. The token only ever crosses TLS here.
set -u
KILN=${KILN_BIN:?}
command -v openssl >/dev/null || { echo "SKIP openssl CLI not installed"; exit 77; }
T=$(mktemp -d /tmp/kiln-tls-XXXXXX)
SERVE=""; W=""
. "$(dirname "$0")/lib_stop.sh"
cleanup() { stop_pid "$W"; stop_pid "$SERVE"; rm -rf "$T"; }
trap cleanup EXIT
[ -n "${KEEP:-}" ] && trap - EXIT
fail() { echo "FAIL: $*"; tail -20 "$T/serve.log"; tail -20 "$T/w.log"; exit 1; }
# A CA and a server certificate for 127.0.0.1 / localhost.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=kiln test CA" \
    -keyout "$T/ca.key" -out "$T/ca.pem" 2>/dev/null || fail "CA"
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$T/srv.key" -out "$T/srv.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' > "$T/ext"
openssl x509 -req -in "$T/srv.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial -days 2 \
    -extfile "$T/ext" -out "$T/srv.pem" 2>/dev/null || fail "server cert"
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
U=https://127.0.0.1:$PORT
ADMIN=$("$KILN" token create --data "$T/d" --role admin | grep -oE 'kiln_[0-9a-f]{48}')
WT=$("$KILN" token create --data "$T/d" --role worker | grep -oE 'kiln_[0-9a-f]{48}')
"$KILN" serve --listen 127.0.0.1:$PORT --data "$T/d" --tls-cert "$T/srv.pem" --tls-key "$T/srv.key" >"$T/serve.log" 2>&1 &
SERVE=$!
for _ in $(seq 100); do curl -fs --cacert "$T/ca.pem" "$U/healthz" >/dev/null && break; sleep 0.05; done
curl -fs --cacert "$T/ca.pem" "$U/healthz" | grep -q ok || fail "healthz over TLS"
echo "ok: healthz over TLS with the CA"
curl -fs "$U/healthz" >/dev/null 2>&1 && fail "a client without the CA must not trust the server"
echo "ok: a client without the CA refuses the certificate"
code=$(curl -s -m 3 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/healthz")
[ "$code" = 200 ] && fail "plain HTTP answered on the TLS port"
echo "ok: plain HTTP on the TLS port gets no answer ($code)"
"$KILN" worker --server "$U" --token "$WT" --ca-file "$T/ca.pem" --name tlsw --cores 1 --ram 1G \
    --work-dir "$T/w" >"$T/w.log" 2>&1 &
W=$!
id=$(KILN_CA_FILE=$T/ca.pem "$KILN" submit --server "$U" --token "$ADMIN" --json -- echo hello over tls | python3 -c 'import json,sys;print(json.load(sys.stdin)["jobs"][0]["id"])') || fail "submit over TLS"
for _ in $(seq 100); do
    s=$(KILN_CA_FILE=$T/ca.pem "$KILN" show "$id" --server "$U" --token "$ADMIN" --json | python3 -c 'import json,sys;print(json.load(sys.stdin)["state"])')
    [ "$s" = succeeded ] && break; sleep 0.1
done
[ "$s" = succeeded ] || fail "job over TLS: $s"
KILN_CA_FILE=$T/ca.pem "$KILN" logs "$id" --server "$U" --token "$ADMIN" | grep -q "hello over tls" || fail "log over TLS"
echo "ok: worker and CLI verified the certificate; job $id ran and its log came back over TLS"
echo PASS
