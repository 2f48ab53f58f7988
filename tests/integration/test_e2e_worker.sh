#!/usr/bin/env bash
# The whole path with the real agent: kiln serve + kiln worker on loopback;
# submit ad-hoc jobs with the CLI-visible API -> the worker registers, leases,
# streams logs, reports -> jobs end succeeded/failed with their logs, a
# dependency waits for its parent, a cancel stops a running job.
set -u
. "$KILN_SRC/tests/integration/lib_serve.sh"
command -v curl >/dev/null || { echo "SKIP: curl not installed"; exit 77; }
fixture e2e
start_serve "$D" --allow-anonymous-read || fail "serve did not start"
start_worker e2e-w

state() { req "" GET "/jobs/$1" | cut -d' ' -f2- | jfield state; }
wait_state() { # id state...
    local id=$1
    shift
    for _ in $(seq 1 300); do
        local s
        s=$(state "$id")
        for want in "$@"; do [ "$s" = "$want" ] && return 0; done
        sleep 0.1
    done
    fail "job $id stuck in $(state "$id"), wanted $*; worker log: $(tail -5 "$T/worker.log")"
}
submit() { req "$SUB" POST /jobs "$1" | cut -d' ' -f2- | jfield id; }

A=$(submit '{"name":"hello","command":"echo hello from kiln; echo second line","cores":1,"ram_mb":256}')
B=$(submit "{\"name\":\"after\",\"command\":\"echo after\",\"depends\":[$A]}")
C=$(submit '{"name":"broken","command":"echo oops >&2; exit 3"}')
[ -n "$A" ] && [ -n "$B" ] && [ -n "$C" ] || fail "submit"
wait_state "$A" succeeded
wait_state "$B" succeeded
wait_state "$C" failed
curl -s "$U/jobs/$A/log" | grep -q 'hello from kiln' || fail "log of A: $(curl -s "$U/jobs/$A/log")"
curl -s "$U/jobs/$C/log" | grep -q 'oops' || fail "log of C"
req "" GET "/jobs/$C" | grep -q '"failed_stage":"build"' || fail "C failed_stage"
# B started only after A finished.
a_end=$(req "" GET "/jobs/$A" | cut -d' ' -f2- | jfield finished_at)
b_start=$(req "" GET "/jobs/$B" | cut -d' ' -f2- | jfield started_at)
awk -v a="$a_end" -v b="$b_start" 'BEGIN{exit !(b >= a)}' || fail "B started ($b_start) before A ended ($a_end)"
# Their directories (left empty) and sent logs went to the worker's pool
# (workers/spare.h) once reported, for later jobs to rename into place.
recycled() {
    for j in "$A" "$B" "$C"; do [ -e "$T/work/jobs/$j-1" ] && return 1; done
    ls "$T/work/spare-e2e-w" | grep -q '^d' && ls "$T/work/spare-e2e-w" | grep -q '^l'
}
for _ in $(seq 1 100); do recycled && break; sleep 0.1; done
recycled || fail "finished jobs' dirs and logs were not recycled: jobs/: $(ls "$T/work/jobs") spare: $(ls "$T/work/spare-e2e-w" 2>&1)"

# Cancel a running job: the worker stops it quickly.
L=$(submit '{"name":"long","command":"sleep 60"}')
wait_state "$L" building
r=$(req "$SUB" POST "/jobs/$L/cancel"); expect 200 "$r" "cancel"
for _ in $(seq 1 50); do
    req "" GET /workers | grep -q '"jobs":\[\]' && break
    sleep 0.1
done
req "" GET /workers | grep -q '"jobs":\[\]' || fail "worker still runs the cancelled job"
# ...and its process is gone within 2 s (children of the worker only).
gone=0
for _ in $(seq 1 20); do
    kids=$(pgrep -P "$WPID" -f 'sleep 60' || true)
    sub=$(for k in $(pgrep -P "$WPID" || true); do pgrep -P "$k" -f 'sleep 60' || true; done)
    if [ -z "$kids" ] && [ -z "$sub" ]; then gone=1; break; fi
    sleep 0.1
done
[ $gone = 1 ] || fail "the cancelled job's process still runs after 2 s"
[ "$(state "$L")" = cancelled ] || fail "L: $(state "$L")"
echo PASS
