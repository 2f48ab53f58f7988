#!/usr/bin/env bash
# One `kiln serve` and three workers, each in its own network namespace,
# joined by veth pairs to a bridge in the server's namespace (10.77.0.0/24,
# only inside namespaces this test creates and deletes). Workers declare
# different capabilities; jobs land only where they fit. A worker killed
# with -9 mid-build has its job requeued and finished elsewhere; a worker cut
# off (link down) and healed re-attaches its job without running it twice;
# one cut off longer than lost_after_s finds its job moved and kills its copy.
set -u
. "$(dirname "$0")/worker_lib.sh"
command -v ip >/dev/null || { echo "SKIP iproute2 (ip) not installed"; exit 77; }
[ "$(id -u)" -eq 0 ] || { echo "SKIP needs root for network namespaces"; exit 77; }
S=kw$$s
NS=("$S" kw$$a kw$$b kw$$c)
cleanup() {
    cleanup_procs
    for n in "${NS[@]}"; do ip netns del "$n" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT
ip netns add "$S" 2>/dev/null || { echo "SKIP cannot create network namespaces here"; exit 77; }
ip -n "$S" link set lo up
ip -n "$S" link add br0 type bridge
ip -n "$S" addr add 10.77.0.1/24 dev br0
ip -n "$S" link set br0 up
for i in 1 2 3; do
    n=${NS[$i]}
    ip netns add "$n" || fail "netns add $n"
    ip -n "$n" link set lo up
    ip link add "v$$h$i" netns "$S" type veth peer name eth0 netns "$n" || fail "veth $i"
    ip -n "$S" link set "v$$h$i" master br0 up
    ip -n "$n" addr add "10.77.0.1$i/24" dev eth0
    ip -n "$n" link set eth0 up
done
ip -n "${NS[1]}" addr show eth0 | grep -q 10.77.0.11 || fail "namespaces not set up"

SERVE_PREFIX="ip netns exec $S"
SERVE_EXTRA="retry_backoff_s: 0" HB_S=3 LOST_S=6 start_serve "$TMP/srv" 8080 10.77.0.1
IN_S="ip netns exec $S"

# w1: big (4 cores, 8 GiB), w2: medium (2 cores, 4 GiB), w3: small (1 core, 2 GiB)
declare -A WPID
start_worker() { # start_worker i cores ram
    ip netns exec "${NS[$1]}" "$KILN_BIN" worker --server "$SERVE_URL" --token "$WTOKEN" \
        --work-dir "$TMP/w$1" --name "w$1" --cores "$2" --ram "$3" >>"$TMP/worker$1.log" 2>&1 &
    WPID[$1]=$!
    PIDS+=("$!")
}
start_worker 1 4 8G
start_worker 2 2 4G
start_worker 3 1 2G
online() { [ "$(jget "$(api GET /workers)" 'sum(1 for w in d["workers"] if w["state"]=="online")')" = 3 ]; }
wait_for 20 online || fail "three workers not online: $(api GET /workers)"
echo "ok 1 three workers online in three namespaces"

# placement: each kind of job may only land on the workers listed
declare -A ALLOWED
sub() { # sub KIND ALLOWED CORES RAM CMD
    local id
    id=$(ssubmit "{\"name\":\"$1\",\"command\":\"$5\",\"cores\":$3,\"ram_mb\":$4,\"platform\":\"x86_64-linux\"}")
    [ -n "$id" ] || fail "submit $1"
    ALLOWED[$id]=$2
}
for k in 1 2; do
    sub four-cores w1 4 1000 "sleep 1"
    sub six-gib w1 1 6000 "sleep 1"
    sub three-gib "w1 w2" 2 3000 "sleep 1"
    sub small "w1 w2 w3" 1 500 "sleep 1"
done
nofit=$(ssubmit '{"name":"no-fit","command":"true","cores":16,"ram_mb":100,"platform":"x86_64-linux"}')
all_done() {
    for id in "${!ALLOWED[@]}"; do sstate_is "$id" succeeded || return 1; done
}
wait_for 60 all_done || fail "placement jobs not done: $(api GET '/jobs?limit=50')"
for id in "${!ALLOWED[@]}"; do
    w=$(jget "$(sjob "$id")" 'd["worker"]')
    case " ${ALLOWED[$id]} " in *" $w "*) ;; *) fail "job $id ran on $w, allowed: ${ALLOWED[$id]}";; esac
done
d=$(sjob "$nofit")
[ "$(jget "$d" 'd["state"]')" = queued ] || fail "16-core job did not stay queued: $d"
echo "ok 2 ${#ALLOWED[@]} jobs landed only where they fit; 16-core job waits: $(jget "$d" 'd["wait_reason"]')"
api POST "/jobs/$nofit/cancel" >/dev/null

# kill -9 a worker mid-build (its host dies: worker and job together)
j=$(ssubmit "{\"name\":\"victim\",\"command\":\"echo \$\$ > $TMP/victim.\$KILN_WORKER.pid; sleep 4; echo done\",\"cores\":1,\"ram_mb\":100,\"platform\":\"x86_64-linux\"}")
wait_for 15 sstate_is "$j" building || fail "victim not started"
w=$(jget "$(sjob "$j")" 'd["worker"]')
i=${w#w}
wait_for 5 test -s "$TMP/victim.$w.pid" || fail "victim pid file missing"
t0=$(date +%s%N)
kill -9 "${WPID[$i]}" || fail "cannot kill worker $w (pid ${WPID[$i]})"
kill -9 -- "-$(cat "$TMP/victim.$w.pid")" 2>/dev/null
elsewhere() { local x; x=$(sjob "$j"); [ "$(jget "$x" 'd["state"]')" = building ] && [ "$(jget "$x" 'd["worker"]')" != "$w" ]; }
wait_for 30 elsewhere || fail "job $j not requeued elsewhere: $(sjob "$j")"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
wait_for 30 sstate_is "$j" succeeded || fail "job $j not finished elsewhere: $(sjob "$j")"
w2=$(jget "$(sjob "$j")" 'd["worker"]')
# lost_after_s is two heartbeat intervals (2 x 3 s); allow the server's check period
[ "$ms" -le 9000 ] || fail "requeue took ${ms} ms"
echo "ok 3 worker $w killed -9: job $j requeued on $w2 after ${ms} ms (heartbeat 3 s, lost after 6 s), finished"
start_worker "$i" 1 2G

# cut a worker off (link down 3 s < lost_after_s) and heal it: re-attach, one run
for x in 1 2 3; do api POST "/workers/$x/drain" '{"drain":true}' >/dev/null; done
j=$(ssubmit "{\"name\":\"cutoff\",\"command\":\"for k in 1 2 3 4 5 6 7 8; do echo tick \$k; sleep 0.5; done\",\"cores\":1,\"ram_mb\":100,\"platform\":\"x86_64-linux\"}")
id3=$(jget "$(api GET /workers)" '[w["id"] for w in d["workers"] if w["name"]=="w3"][0]')
api POST "/workers/$id3/drain" '{"drain":false}' >/dev/null
wait_for 20 sstate_is "$j" building || fail "cutoff job not started"
[ "$(jget "$(sjob "$j")" 'd["worker"]')" = w3 ] || fail "cutoff job not on w3"
sleep 0.7
ip -n "${NS[3]}" link set eth0 down
sleep 3
ip -n "${NS[3]}" link set eth0 up
wait_for 40 sstate_is "$j" succeeded || fail "cutoff job not finished: $(sjob "$j")"
d=$(sjob "$j")
[ "$(jget "$d" 'd["attempt"]')" = 1 ] || fail "cutoff job ran again: $d"
api GET "/jobs/$j/log" >"$TMP/cut.log"
[ "$(grep -c '^--- kiln: attempt' "$TMP/cut.log")" = 1 ] || fail "more than one attempt in the log"
[ "$(grep -c '^tick' "$TMP/cut.log")" = 8 ] || fail "log lost or doubled lines: $(cat "$TMP/cut.log")"
echo "ok 4 worker w3 cut off for 3 s and healed: job re-attached, one attempt, log intact"

# cut off longer than lost_after_s: the job moves elsewhere; when the link
# heals the worker re-registers, is told to cancel its copy and kills it
# (w1 and w2 are still drained from step 4, so the job lands on w3)
j=$(ssubmit "{\"name\":\"moved\",\"command\":\"echo \$\$ > $TMP/moved.\$KILN_WORKER.pid; sleep 20; echo finished on \$KILN_WORKER\",\"cores\":1,\"ram_mb\":100,\"platform\":\"x86_64-linux\"}")
wait_for 20 sstate_is "$j" building || fail "moved job not started"
[ "$(jget "$(sjob "$j")" 'd["worker"]')" = w3 ] || fail "moved job not on w3"
wait_for 5 test -s "$TMP/moved.w3.pid" || fail "moved job pid missing"
ip -n "${NS[3]}" link set eth0 down
for x in 1 2; do
    idx=$(jget "$(api GET /workers)" '[w["id"] for w in d["workers"] if w["name"]=="w'$x'"][0]')
    api POST "/workers/$idx/drain" '{"drain":false}' >/dev/null
done
moved() { local x; x=$(sjob "$j"); [ "$(jget "$x" 'd["worker"]')" != w3 ] && [ "$(jget "$x" 'd["state"]')" = building ]; }
wait_for 20 moved || fail "job did not move off the cut-off worker: $(sjob "$j")"
ip -n "${NS[3]}" link set eth0 up
pid3=$(cat "$TMP/moved.w3.pid")
dead3() { ! ps -o stat= -p "$pid3" 2>/dev/null | grep -qv Z; }
wait_for 30 dead3 || fail "w3 did not kill its copy after re-registering"
grep -q "job $j: cancelled by the server" "$TMP/worker3.log" || fail "no cancel on w3"
wait_for 30 sstate_is "$j" succeeded || fail "moved job did not finish: $(sjob "$j")"
api GET "/jobs/$j/log" >"$TMP/moved.log"
[ "$(grep -c '^finished on' "$TMP/moved.log")" = 1 ] || fail "moved job finished twice or never: $(cat "$TMP/moved.log")"
grep -q '^finished on w3' "$TMP/moved.log" && fail "the cut-off worker's copy finished"
echo "ok 5 w3 cut off past lost_after_s: job finished on $(jget "$(sjob "$j")" 'd["worker"]'), w3 killed its copy on re-registering"
echo PASS
