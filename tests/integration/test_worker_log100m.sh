#!/usr/bin/env bash
# A job writes 100 MB of log; the server is killed (-9) and restarted while
# the worker is uploading it. The worker re-registers, re-attaches the job and
# resumes at the server's size: the server's log (after its attempt marker
# line) has the same sha256 as the job's output - nothing lost, nothing twice.
set -u
. "$(dirname "$0")/worker_lib.sh"
trap 'cleanup_procs; [ -n "${KEEP:-}" ] || rm -rf "$TMP"' EXIT

PORT=$(free_port)
N=12500000 # `seq 1 N`: about 100 MB
LOST_S=20 start_serve "$TMP/srv" "$PORT"
"$KILN_BIN" worker --server "$SERVE_URL" --token "$WTOKEN" --work-dir "$TMP/w" --name logger \
    --cores 1 --ram 2G >"$TMP/worker.log" 2>&1 &
PIDS+=("$!")

expect=$(seq 1 $N | sha256sum | cut -d' ' -f1)
size=$(seq 1 $N | wc -c)
j=$(ssubmit "{\"name\":\"log100m\",\"command\":\"seq 1 $N\",\"cores\":1,\"ram_mb\":512}")
[ -n "$j" ] || fail "submit failed"
t0=$(date +%s)
big() { [ "$(jget "$(sjob "$j")" 'd["log_size"]')" -gt 30000000 ]; }
wait_for 60 big || fail "log did not reach 30 MB: $(sjob "$j")"
kill -9 "$SERVE_PID"; wait "$SERVE_PID" 2>/dev/null
echo "server killed at $(date +%s.%N); restarting"
sleep 1
start_serve "$TMP/srv" "$PORT"
wait_for 90 sstate_is "$j" succeeded || fail "job did not succeed: $(sjob "$j")"
api GET "/jobs/$j/log" >"$TMP/server-log.txt"
head -1 "$TMP/server-log.txt" | grep -q '^--- kiln: attempt 1 (build) on worker logger ---$' ||
    fail "unexpected first line: $(head -1 "$TMP/server-log.txt")"
grep -c '^--- kiln: attempt' "$TMP/server-log.txt" | grep -qx 1 || fail "job ran more than one attempt"
got=$(tail -n +2 "$TMP/server-log.txt" | sha256sum | cut -d' ' -f1)
gotsize=$(tail -n +2 "$TMP/server-log.txt" | wc -c)
[ "$got" = "$expect" ] || fail "sha256 differs: server $got ($gotsize bytes), job $expect ($size bytes)"
grep -q "registered as worker" "$TMP/worker.log" || fail "no registration"
[ "$(grep -c 'registered as worker' "$TMP/worker.log")" -ge 2 ] || fail "worker did not re-register"
echo "PASS: $size bytes, sha256 $got, with a server restart mid-upload ($(( $(date +%s) - t0 )) s)"
