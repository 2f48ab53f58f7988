#!/usr/bin/env bash
# The worker agent against a stand-in server (worker_fake_server.py): jobs
# run with NIX_BUILD_CORES/MAX_JOBS = their cores; a RAM hog is killed and
# reported as a RAM-limit failure and the worker takes the next job; two jobs
# run at once when cores allow; cancel kills the group within 2 s; drain;
# a server restart mid-job re-attaches without running it twice; SIGTERM
# finishes running work; a second signal hands jobs back (infra failure ->
# requeued); a bad token exits with status 4.
set -u
. "$(dirname "$0")/worker_lib.sh"
trap 'cleanup_procs; [ -n "${KEEP:-}" ] || rm -rf "$TMP"' EXIT
command -v python3 >/dev/null || { echo "SKIP python3 not installed"; exit 77; }

PORT=$(free_port)
URL=http://127.0.0.1:$PORT
start_server() {
    python3 "$FAKE" "$PORT" kiln_good "$TMP/srv" 1 6 >>"$TMP/server.log" 2>&1 &
    SP=$!
    PIDS+=("$SP")
    wait_for 30 curl -sf "$URL/test/workers" || fail "fake server did not start"
}
submit() { curl -sf -XPOST "$URL/test/jobs" -d "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'; }
job() { curl -sf "$URL/test/jobs/$1"; }
state_is() { [ "$(jget "$(job "$1")" 'd["state"]')" = "$2" ]; }

start_server
"$KILN_BIN" worker --server "$URL" --token kiln_good --work-dir "$TMP/w" --name w1 \
    --cores 2 --ram 4G >"$TMP/worker.log" 2>&1 &
WP=$!
PIDS+=("$WP")

# 1. a job with its cores in the environment
j=$(submit '{"command":"echo NIX=$NIX_BUILD_CORES MJ=$MAX_JOBS TOKEN=${KILN_TOKEN:-none}","resources":{"cores":2,"ram_mb":100}}')
wait_for 15 state_is "$j" succeeded || fail "job $j did not succeed: $(job "$j")"
log=$(curl -sf "$URL/test/log/$j")
[ "$log" = "NIX=2 MJ=2 TOKEN=none" ] || fail "job env/log wrong: '$log'"
echo "ok 1 job ran with NIX_BUILD_CORES=MAX_JOBS=2, log uploaded"

# 2. RAM hog: 2 GiB under a 1 GiB limit
hog='import time
a=[]
for i in range(32):
    a.append(b"x"*(64<<20)); time.sleep(0.02)
print("hog done")'
body=$(python3 -c 'import json,sys; print(json.dumps({"command":"python3 -c '"'"'%s'"'"'" % sys.argv[1],"resources":{"cores":1,"ram_mb":1024}}))' "$hog")
j=$(submit "$body")
j2=$(submit '{"command":"echo next","resources":{"cores":1,"ram_mb":100}}')
wait_for 30 state_is "$j" failed || fail "hog job $j not failed: $(job "$j")"
reason=$(jget "$(job "$j")" 'd["report"]["reason"]')
case $reason in "exceeded its RAM limit of 1 GiB, peak "*) ;; *) fail "hog reason: $reason";; esac
wait_for 15 state_is "$j2" succeeded || fail "worker did not take the next job"
echo "ok 2 RAM hog failed: $reason; next job ran"

# 3. two jobs at once
# Each job holds until the test has seen both running, so the property (both
# at once) does not depend on how fast a busy machine starts the second.
hold="{\"command\":\"while [ ! -e $TMP/go ]; do sleep 0.1; done\",\"resources\":{\"cores\":1,\"ram_mb\":100}}"
ja=$(submit "$hold")
jb=$(submit "$hold")
both() { state_is "$ja" building && state_is "$jb" building; }
wait_for 60 both || fail "two 1-core jobs did not run together on 2 cores"
touch "$TMP/go"
wait_for 15 state_is "$jb" succeeded || fail "job $jb did not finish"
echo "ok 3 two jobs ran at once"

# 4. cancel kills the whole group within 2 s
j=$(submit "{\"command\":\"sleep 300 & echo \$! > $TMP/child.pid; echo \$\$ > $TMP/main.pid; wait\",\"resources\":{\"cores\":1,\"ram_mb\":100}}")
wait_for 10 test -s "$TMP/child.pid" || fail "cancel job did not start"
curl -sf -XPOST "$URL/test/cancel/$j" >/dev/null
t0=$(date +%s%N)
# a killed process whose reaper has not collected it yet (zombie) counts as gone
alive() { local st; st=$(ps -o stat= -p "$1" 2>/dev/null) && [ -n "$st" ] && [ "${st#Z}" = "$st" ]; }
gone() { ! alive "$(cat "$TMP/child.pid")" && ! alive "$(cat "$TMP/main.pid")"; }
wait_for 5 gone || fail "cancelled job still running"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[ "$ms" -le 2000 ] || fail "cancel took ${ms} ms (> 2 s)"
echo "ok 4 cancel killed the job's group in ${ms} ms"

# 5. server restart mid-job: re-attach, no second run, log complete
# The job holds until the server is back, so that it is still running when
# the worker reconnects however slowly a busy machine restarts the server.
j=$(submit "{\"command\":\"for i in 1 2 3 4 5 6; do echo line \$i; sleep 0.5; done; while [ ! -e $TMP/back ]; do sleep 0.1; done\",\"resources\":{\"cores\":1,\"ram_mb\":100}}")
wait_for 10 state_is "$j" building || fail "job $j not started"
sleep 1
kill -9 "$SP"; wait "$SP" 2>/dev/null
sleep 2
start_server
reregistered() { [ "$(grep -c 'registered as worker' "$TMP/worker.log")" -ge 2 ]; }
wait_for 30 reregistered || fail "worker did not register again after the restart"
touch "$TMP/back"
wait_for 30 state_is "$j" succeeded || fail "job $j not finished after restart: $(job "$j")"
d=$(job "$j")
[ "$(jget "$d" 'len(d["runs"])')" = 1 ] || fail "job ran twice: $d"
[ "$(jget "$d" 'd.get("reattached",0) >= 1')" = True ] || fail "job not re-attached: $d"
exp=$(for i in 1 2 3 4 5 6; do echo line $i; done | sha256sum | cut -d' ' -f1)
[ "$(jget "$d" 'd["log_sha256"]')" = "$exp" ] || fail "log differs after reconnect: $(curl -s "$URL/test/log/$j")"
echo "ok 5 server restart: job re-attached, ran once, log intact"

# 6. drain: no new work
curl -sf -XPOST "$URL/test/drain/w1" -d '{"drain":true}' >/dev/null
sleep 2.5
j=$(submit '{"command":"echo drained","resources":{"cores":1,"ram_mb":100}}')
sleep 3
state_is "$j" queued || fail "draining worker took job $j"
curl -sf -XPOST "$URL/test/drain/w1" -d '{"drain":false}' >/dev/null
wait_for 15 state_is "$j" succeeded || fail "job $j not run after drain lifted"
echo "ok 6 drain respected and lifted"

# 7. SIGTERM: running job finishes and is reported, then the worker exits
# The job holds until the worker has had its SIGTERM, so that it is running
# then however busy the machine is.
j=$(submit "{\"command\":\"while [ ! -e $TMP/termed ]; do sleep 0.1; done; echo finished\",\"resources\":{\"cores\":1,\"ram_mb\":100}}")
wait_for 10 state_is "$j" building || fail "job $j not started"
kill -TERM "$WP"
sleep 0.5
touch "$TMP/termed"
wait_for 20 state_is "$j" succeeded || fail "job $j not finished after SIGTERM: $(job "$j")"
wait_for 20 sh -c "! kill -0 $WP" || fail "worker did not exit after SIGTERM"
wait "$WP"; rc=$?
[ $rc -eq 0 ] || fail "worker exit status $rc after SIGTERM"
echo "ok 7 SIGTERM finished the running job and exited 0"

# 8. second signal: the job is handed back (infra) and requeued
"$KILN_BIN" worker --server "$URL" --token kiln_good --work-dir "$TMP/w" --name w1 \
    --cores 2 --ram 4G >>"$TMP/worker.log" 2>&1 &
WP=$!
PIDS+=("$WP")
j=$(submit '{"command":"sleep 300","resources":{"cores":1,"ram_mb":100}}')
wait_for 10 state_is "$j" building || fail "job $j not started"
kill -TERM "$WP"; sleep 0.3; kill -INT "$WP"
wait_for 20 sh -c "! kill -0 $WP" || fail "worker did not exit after a second signal"
d=$(job "$j")
[ "$(jget "$d" 'd["state"]')" = queued ] || fail "job not requeued: $d"
[ "$(jget "$d" 'd["attempt"] >= 2')" = True ] || fail "attempt not bumped: $d"
echo "ok 8 second signal handed the job back: $(jget "$d" 'd["history"][-1]')"

# 9. GPUs declared in the config: a GPU job sees only its GPU
cat >"$TMP/gpu.yaml" <<YAML
name: w3
cores: 2
ram: 4G
gpus:
  - {index: 0, name: NVIDIA H100 80GB HBM3, sm: "90", memory_mb: 81559, driver: 580.65.06}
  - {index: 1, name: NVIDIA L40S, sm: "89", memory_mb: 46068, driver: 580.65.06}
YAML
"$KILN_BIN" worker --config "$TMP/gpu.yaml" --server "$URL" --token kiln_good --work-dir "$TMP/w3" \
    >>"$TMP/worker3.log" 2>&1 &
PIDS+=("$!")
curl -sf -XPOST "$URL/test/cancel/$j" >/dev/null # the handed-back 300 s job from step 8
jg=$(submit '{"command":"echo CVD=$CUDA_VISIBLE_DEVICES","resources":{"cores":1,"ram_mb":100,"gpu_sm":"89"}}')
jn=$(submit '{"command":"echo CVD=[$CUDA_VISIBLE_DEVICES]","resources":{"cores":1,"ram_mb":100}}')
wait_for 15 state_is "$jg" succeeded || fail "gpu job: $(job "$jg")"
wait_for 15 state_is "$jn" succeeded || fail "non-gpu job: $(job "$jn")"
[ "$(curl -sf "$URL/test/log/$jg")" = "CVD=1" ] || fail "gpu job saw $(curl -sf "$URL/test/log/$jg")"
[ "$(curl -sf "$URL/test/log/$jn")" = "CVD=[]" ] || fail "non-gpu job saw $(curl -sf "$URL/test/log/$jn")"
echo "ok 9 GPU job got CUDA_VISIBLE_DEVICES=1 (its SM 89 GPU); a build on the GPU host got none"

# 10. a bad token is an auth error (exit 4)
"$KILN_BIN" worker --server "$URL" --token kiln_bad --work-dir "$TMP/w2" --name w2 >"$TMP/bad.log" 2>&1
rc=$?
[ $rc -eq 4 ] || fail "bad token exit status $rc"
echo "ok 10 bad token -> exit 4"
echo "PASS"
