#!/usr/bin/env bash
# kill -9 of kiln serve while jobs run, then restart on the same data dir:
# nothing is lost, nothing runs twice at once, running jobs are re-attached
# when their worker re-registers with them, requeued when it does not, and
# requeued as "worker lost" when the worker never comes back.
set -u
. "$KILN_SRC/tests/integration/lib_serve.sh"
command -v curl >/dev/null || { echo "SKIP: curl not installed"; exit 77; }
T=$(mktemp -d /tmp/kiln-crash-XXXXXX)
trap 'stop_serve; rm -rf "$T"' EXIT
D=$T/var
cat >"$T/kiln.yaml" <<EOC
heartbeat_s: 1
lost_after_s: 8
retry_backoff_s: 0
lease_ack_s: 30
EOC
SUB=$("$KILN_BIN" token create --role submit --data "$D" 2>/dev/null)
WK=$("$KILN_BIN" token create --role worker --data "$D" 2>/dev/null)
start_serve "$D" --config "$T/kiln.yaml" --allow-anonymous-read || fail "serve did not start"

REG1='{"name":"w1","cores":4,"ram_mb":8192,"platform":"x86_64-linux"}'
REG2='{"name":"w2","cores":4,"ram_mb":8192,"platform":"x86_64-linux"}'
for n in a b c d; do
    r=$(req "$SUB" POST /jobs "{\"name\":\"$n\",\"command\":\"sleep 100\",\"cores\":1,\"ram_mb\":100}")
    expect 201 "$r" "submit $n"
done
# Each worker acts with the credential its registration returned.
R1=$(req "$WK" POST /workers/register "$REG1" | cut -d' ' -f2-)
R2=$(req "$WK" POST /workers/register "$REG2" | cut -d' ' -f2-)
W1=$(echo "$R1" | jfield worker_id); C1=$(echo "$R1" | jfield credential)
W2=$(echo "$R2" | jfield worker_id); C2=$(echo "$R2" | jfield credential)
cred() { if [ "$1" = "$W1" ]; then echo "$C1"; else echo "$C2"; fi; }
lease() { req "$(cred "$1")" POST "/workers/$1/lease?wait=1" '{}' | cut -d' ' -f2- | jfield id; }
J1=$(lease "$W1"); J2=$(lease "$W1"); J3=$(lease "$W2")
[ -n "$J1" ] && [ -n "$J2" ] && [ -n "$J3" ] || fail "leases: $J1 $J2 $J3"
r=$(req "$C1" POST "/jobs/$J1/log?attempt=1&offset=0" 'before crash
'); expect 200 "$r" "log before crash"

kill -9 "$SERVE_PID"
wait "$SERVE_PID" 2>/dev/null
SERVE_PID=""
start_serve "$D" --config "$T/kiln.yaml" --allow-anonymous-read || fail "restart"

# Nothing lost: all four jobs, three still building, one queued.
r=$(req "" GET /jobs)
[ "$(echo "$r" | grep -o '"state":"building"' | wc -l)" = 3 ] || fail "after restart: $r"
[ "$(echo "$r" | grep -o '"state":"queued"' | wc -l)" = 1 ] || fail "after restart: $r"
state() { req "" GET "/jobs/$1" | cut -d' ' -f2- | jfield state; }

# w1 comes back running only J1: J1 stays attached, J2 is requeued. It
# proves who it is with its credential, which the answer rotates.
r=$(req "$C1" POST /workers/register "${REG1%\}},\"running\":[{\"job\":$J1,\"attempt\":1,\"log_offset\":13}]}")
expect 200 "$r" "re-register w1"
C1=$(echo "$r" | cut -d' ' -f2- | jfield credential)
echo "$r" | grep -q '"cancel":\[\]' || fail "nothing to cancel expected: $r"
[ "$(state "$J1")" = building ] || fail "J1 not re-attached: $(state "$J1")"
[ "$(state "$J2")" = queued ] || fail "J2 not requeued: $(state "$J2")"
# Its log continues where it was.
r=$(req "$C1" POST "/jobs/$J1/log?attempt=1&offset=13" 'after restart
'); expect 200 "$r" "log after restart"
echo "$r" | grep -q '"size":27' || fail "log size: $r"
curl -s "$U/jobs/$J1/log" | grep -q 'before crash' || fail "log lost"

# Nothing runs twice at once: a lease never hands out J1 again.
for _ in 1 2; do
    got=$(lease "$W1")
    [ "$got" != "$J1" ] || fail "J1 leased twice"
done
# A stale attempt of J2 (the one lost in the worker restart) is told to cancel.
r=$(req "$C1" POST "/workers/$W1/heartbeat" "{\"running\":[{\"job\":$J1,\"attempt\":1},{\"job\":$J2,\"attempt\":1}]}")
echo "$r" | grep -q "\"cancel\":\[$J2\]" || fail "stale attempt not cancelled: $r"

# w2 never comes back: after lost_after_s its job is requeued as an infra failure.
for _ in $(seq 1 300); do
    [ "$(state "$J3")" = queued ] && break
    # keep w1 alive meanwhile
    req "$C1" POST "/workers/$W1/heartbeat" "{\"running\":[{\"job\":$J1,\"attempt\":1}]}" >/dev/null
    sleep 0.2
done
[ "$(state "$J3")" = queued ] || fail "J3 not requeued after w2 was lost: $(req "" GET "/jobs/$J3")"
req "" GET "/jobs/$J3" | grep -q 'w2 was lost' || fail "J3 reason: $(req "" GET "/jobs/$J3")"
req "" GET /workers | grep -q '"name":"w2","state":"lost"' || fail "w2 not lost: $(req "" GET /workers)"

# J1 finishes normally.
r=$(req "$C1" POST "/jobs/$J1/report" '{"attempt":1,"exit_code":0}'); expect 200 "$r" "report J1"
[ "$(state "$J1")" = succeeded ] || fail "J1: $(state "$J1")"

# Second crash right after a report: the result stays.
kill -9 "$SERVE_PID"
wait "$SERVE_PID" 2>/dev/null
SERVE_PID=""
start_serve "$D" --config "$T/kiln.yaml" --allow-anonymous-read || fail "restart 2"
[ "$(state "$J1")" = succeeded ] || fail "J1 after crash 2: $(state "$J1")"
# Clean stop exits 0.
kill -TERM "$SERVE_PID"
wait "$SERVE_PID"
rc=$?
SERVE_PID=""
[ $rc = 0 ] || fail "SIGTERM exit $rc"
echo PASS
