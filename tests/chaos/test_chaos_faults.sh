#!/usr/bin/env bash
# Chaos beyond SIGKILL of serve (issue 16, build point 8). A mixed run of
# builds (log-heavy, some failing on purpose) and catalog publishes, with two
# real workers (c2 reaches the server through a TCP proxy this script owns),
# and one fault per round, in this order, round after round:
#   serve     SIGKILL of kiln serve, restarted
#   build     SIGKILL of a worker while its jobs build, a fresh worker started
#   upload    SIGKILL of a worker while its jobs stream their logs
#   link      the proxy killed (c2's connections cut, new ones refused) for
#             1-3 s, then started again on the same port
#   sqlite    another process holds an EXCLUSIVE write lock on kiln.db for
#             CHAOS_BUSY_S seconds (bounded 2; full form: 2-12, past the 10 s
#             busy timeout, so writes fail and must be retried)
#   disk      the logs directory (a small tmpfs of this script's own mount
#             namespace) filled to ENOSPC for 2 s, then freed
# Timing (which job a fault meets) comes from CHAOS_SEED; the assertions do
# not depend on it. After the run:
#   - every job ended exactly once (one final-state event), in its intended
#     state (every 6th fails with exit 3, the others succeed);
#   - every log is complete (its first and last line are there);
#   - every artifact was published once, with its bytes (one entry per name
#     and version, the digest of the file pushed), and `kiln catalog verify`
#     is clean;
#   - the service recovered by itself: a job submitted after the last fault
#     runs to the end, and /healthz answers.
# Bounded (6 rounds, one of each fault, 18 jobs) in make check through
# tests/integration/test_chaos_faults_bounded.sh; `make chaos` runs
# CHAOS_ROUNDS=30 CHAOS_JOBS=90 (CHAOS_FAULTS picks a subset, CHAOS_KEEP=1
# keeps the run directory). The disk fault needs root (a mount
# namespace); without it that fault is skipped and said so.
# Exit 0 pass, 77 skip.
set -u
: "${KILN_BIN:?set KILN_BIN}" "${KILN_SRC:?set KILN_SRC}"
command -v python3 >/dev/null || { echo "SKIP: python3 not installed"; exit 77; }
command -v curl >/dev/null || { echo "SKIP: curl not installed"; exit 77; }
# Our own mount namespace: the tmpfs is seen by this run alone and goes
# with it.
if [ -z "${CHAOS_NS:-}" ]; then
    if [ "$(id -u)" = 0 ] && unshare -m --propagation private true 2>/dev/null; then
        CHAOS_NS=1 exec unshare -m --propagation private bash "$0" "$@"
    fi
    export CHAOS_NS=none
fi
. "$KILN_SRC/tests/integration/lib_stop.sh"
ROUNDS=${CHAOS_ROUNDS:-6}
NJOBS=${CHAOS_JOBS:-18}
SEED=${CHAOS_SEED:-$$}
RANDOM=$SEED
T=$(mktemp -d /tmp/kiln-chaosf-XXXXXX)
D=$T/data
SERVE="" PROXY="" LOCK=""
W1="" W2=""
NW=2
cleanup() {
    stop_pid "$W1"
    stop_pid "$W2"
    stop_pid "$PROXY"
    stop_pid "$LOCK"
    stop_pid "$SERVE"
    [ "$CHAOS_NS" = 1 ] && umount "$D/logs" 2>/dev/null
    if [ -n "${CHAOS_KEEP:-}" ]; then echo "kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
fail() {
    echo "FAIL (seed $SEED): $*"
    tail -20 "$T/serve.log"
    for f in "$T"/c*.log; do echo "--- $f"; tail -6 "$f"; done
    exit 1
}
freeport() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
PORT=$(freeport)
PPORT=$(freeport)
URL=http://127.0.0.1:$PORT
mkdir -p "$D/logs"
DISK=skipped
if [ "$CHAOS_NS" = 1 ] && mount -t tmpfs -o size=16m kiln-chaos "$D/logs"; then DISK=tmpfs; fi
ADMIN=$("$KILN_BIN" token create --data "$D" --role admin 2>/dev/null | grep -oE 'kiln_[0-9a-f]{48}')
REG=$("$KILN_BIN" token create --data "$D" --role worker 2>/dev/null | grep -oE 'kiln_[0-9a-f]{48}')
[ -n "$ADMIN" ] && [ -n "$REG" ] || fail "token create"
cat >"$T/kiln.yaml" <<Y
heartbeat_s: 1
lost_after_s: 3
Y
start_serve() {
    "$KILN_BIN" serve --listen 127.0.0.1:$PORT --data "$D" --config "$T/kiln.yaml" \
        >>"$T/serve.log" 2>&1 &
    SERVE=$!
    for _ in $(seq 150); do
        curl -fs -m 2 "$URL/healthz" >/dev/null && return 0
        sleep 0.1
    done
    return 1
}
# The link of worker c2: a forwarder from PPORT to PORT, one thread a side.
start_proxy() {
    python3 - "$PPORT" "$PORT" >>"$T/proxy.log" 2>&1 <<'P' &
import socket, sys, threading
lp, tp = int(sys.argv[1]), int(sys.argv[2])
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", lp))
srv.listen(64)
def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
while True:
    c, _ = srv.accept()
    try:
        u = socket.create_connection(("127.0.0.1", tp))
    except OSError:
        c.close()
        continue
    threading.Thread(target=pipe, args=(c, u), daemon=True).start()
    threading.Thread(target=pipe, args=(u, c), daemon=True).start()
P
    PROXY=$!
    for _ in $(seq 50); do
        curl -fs -m 2 "http://127.0.0.1:$PPORT/healthz" >/dev/null && return 0
        sleep 0.1
    done
    return 1
}
# start_worker 1|2: c1 talks to serve directly, c2 through the proxy. A
# killed worker comes back under a new name (the old one stays live until
# the server marks it lost).
start_worker() {
    local n=$1 url=$URL
    [ "$n" = 2 ] && url=http://127.0.0.1:$PPORT
    NW=$((NW + 1))
    "$KILN_BIN" worker --server "$url" --token "$REG" --name "c$n-$NW" --cores 4 --ram 2G \
        --work-dir "$T/w$NW" >"$T/c$n-$NW.log" 2>&1 &
    if [ "$n" = 1 ]; then W1=$!; else W2=$!; fi
}
start_serve || fail "serve did not start"
start_proxy || fail "proxy did not start"
start_worker 1
start_worker 2
export KILN_SERVER=$URL KILN_TOKEN=$ADMIN

# Job i prints out-i, 300 log lines in bursts, then end-i (or fails with exit
# 3 when i is a multiple of 6). Up to 20 attempts: a job may meet several
# worker kills, and each counts as an attempt.
submit() {
    local i=$1 cmd body
    if [ $((i % 6)) = 0 ]; then
        cmd="echo out-$i; for k in \$(seq 100); do echo line-$i-\$k; done; sleep 0.$((RANDOM % 8)); exit 3"
    else
        cmd="echo out-$i; for b in 1 2 3; do for k in \$(seq 100); do echo line-$i-\$b-\$k; done; sleep 0.$((RANDOM % 5)); done; echo end-$i"
    fi
    # (printf, not python: the command has no quote or backslash to escape,
    # and a python start costs seconds on a busy machine)
    body=$(printf '{"name":"c-%s","command":"%s","cores":1,"ram_mb":128,"max_attempts":20}' "$i" "$cmd")
    for _ in $(seq 20); do
        curl -fs -m 10 -X POST -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
            -d "$body" "$URL/api/v1/jobs" >/dev/null && return 0
        sleep 0.5
    done
    return 1
}
# publish r: artifact r as chaos-art version r; the push is idempotent, so it
# is simply retried until the server answers.
publish() {
    local r=$1
    head -c $((4096 + RANDOM)) /dev/urandom >"$T/art-$r"
    for _ in $(seq 20); do
        "$KILN_BIN" catalog push "$T/art-$r" --server "$URL" --name chaos-art --version "$r" \
            >>"$T/push.log" 2>&1 && return 0
        sleep 0.5
    done
    return 1
}
# Wait until some job is building, so a worker kill lands mid-build.
wait_building() {
    for _ in $(seq 100); do
        [ "$(sqlite3 -cmd '.timeout 2000' "$D/kiln.db" "SELECT COUNT(*) FROM jobs WHERE state = 'building'" 2>/dev/null)" -gt 0 ] 2>/dev/null && return 0
        sleep 0.1
    done
    return 0
}
kill_worker() { # the worker that holds a building job, else c1
    local w=1 wn
    wn=$(sqlite3 -cmd '.timeout 2000' "$D/kiln.db" "SELECT w.name FROM jobs j JOIN workers w ON w.id = j.worker_id WHERE j.state = 'building' LIMIT 1" 2>/dev/null)
    case "$wn" in c2-*) w=2 ;; esac
    if [ "$w" = 1 ]; then kill -KILL "$W1" 2>/dev/null; wait "$W1" 2>/dev/null; else kill -KILL "$W2" 2>/dev/null; wait "$W2" 2>/dev/null; fi
    start_worker "$w"
}
read -r -a FAULTS <<<"${CHAOS_FAULTS:-serve build upload link sqlite disk}"
declare -A done_count=()
per=$(( (NJOBS + ROUNDS - 1) / ROUNDS ))
i=0
for r in $(seq "$ROUNDS"); do
    f=${FAULTS[$(( (r - 1) % ${#FAULTS[@]} ))]}
    # The disk fills before the round's jobs start, so their logs meet it.
    [ "$f" = disk ] && [ "$DISK" = tmpfs ] && cat /dev/zero >"$D/logs/zz-filler" 2>/dev/null
    for _ in $(seq "$per"); do
        [ $i -lt "$NJOBS" ] || break
        i=$((i + 1))
        submit "$i" || fail "submit $i"
    done
    # A worker kill or cut link must meet running jobs: it comes first, the
    # publish after; the other faults meet the publish's traffic too.
    case $f in build | upload | link) ;; *) publish "$r" || fail "publish $r" ;; esac
    sleep "0.$((RANDOM % 3))"
    case $f in
    serve)
        kill -KILL "$SERVE" 2>/dev/null
        wait "$SERVE" 2>/dev/null
        start_serve || fail "serve did not come back after round $r"
        ;;
    build)
        wait_building
        kill_worker
        ;;
    upload)
        # Log lines stream while the jobs run: kill in the middle of them.
        wait_building
        sleep "0.$((RANDOM % 5))"
        kill_worker
        ;;
    link)
        wait_building
        kill -KILL "$PROXY" 2>/dev/null
        wait "$PROXY" 2>/dev/null
        sleep $((RANDOM % 3 + 1))
        start_proxy || fail "proxy did not come back in round $r"
        ;;
    sqlite)
        hold=${CHAOS_BUSY_S:-2}
        [ "$hold" = random ] && hold=$((RANDOM % 11 + 2))
        sqlite3 -cmd '.timeout 30000' "$D/kiln.db" "BEGIN EXCLUSIVE;" ".shell sleep $hold" \
            "COMMIT;" >/dev/null &
        LOCK=$!
        wait "$LOCK" || fail "could not take the SQLite lock in round $r"
        LOCK=""
        ;;
    disk)
        if [ "$DISK" = tmpfs ]; then
            # Full while the round's jobs wait (no lease can write its log
            # marker), then again while they stream their logs.
            sleep 2
            rm -f "$D/logs/zz-filler"
            wait_building
            cat /dev/zero >"$D/logs/zz-filler" 2>/dev/null
            sleep 1
            rm -f "$D/logs/zz-filler"
        fi
        ;;
    esac
    case $f in build | upload | link) publish "$r" || fail "publish $r" ;; esac
    done_count[$f]=$(( ${done_count[$f]:-0} + 1 ))
done
# The service recovers by itself: one more job, after every fault.
i=$((i + 1))
NJOBS=$i
submit "$i" || fail "submit after the faults"
final() {
    [ "$(sqlite3 -cmd '.timeout 5000' "$D/kiln.db" "SELECT COUNT(*) FROM jobs WHERE state IN ('succeeded','failed','cancelled','superseded')" 2>/dev/null)" -ge "$NJOBS" ] 2>/dev/null
}
for _ in $(seq 1200); do final && break; sleep 0.2; done
final || fail "not every job ended: $(sqlite3 "$D/kiln.db" 'SELECT state, COUNT(*) FROM jobs GROUP BY state' 2>/dev/null)"
curl -fs -m 5 "$URL/healthz" >/dev/null || fail "healthz after the run"
python3 - "$D" "$T" "$ROUNDS" <<'P' || fail "invariants"
import hashlib, json, os, sqlite3, sys
d, t, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
db = sqlite3.connect(os.path.join(d, "kiln.db"), timeout=10)
bad = []
finals = {}
for (data,) in db.execute("SELECT data FROM events WHERE type = 'job' ORDER BY id"):
    j = json.loads(data)
    if j.get("state") in ("succeeded", "failed", "cancelled", "superseded"):
        finals.setdefault(j["id"], []).append(j["state"])
for jid, name, state, reason in db.execute("SELECT id, name, state, reason FROM jobs"):
    i = int(name.split("-")[1])
    want = "failed" if i % 6 == 0 else "succeeded"
    if state != want:
        bad.append("job %s (%s) is %s (%s), wanted %s" % (jid, name, state, reason, want))
    if len(finals.get(jid, [])) != 1:
        bad.append("job %s ended %d times: %s" % (jid, len(finals.get(jid, [])), finals.get(jid)))
    p = os.path.join(d, "logs", "%d.log" % jid)
    log = open(p, errors="replace").read() if os.path.exists(p) else ""
    if "out-%d\n" % i not in log or (want == "succeeded" and "end-%d\n" % i not in log):
        bad.append("job %s log incomplete: %r" % (jid, log[-200:]))
cat = sqlite3.connect(os.path.join(d, "catalog", "catalog.db"), timeout=10)
for r in range(1, rounds + 1):
    rows = cat.execute("SELECT digest FROM entries WHERE name = 'chaos-art' AND version = ?",
                       (str(r),)).fetchall()
    want = "sha256:" + hashlib.sha256(open(os.path.join(t, "art-%d" % r), "rb").read()).hexdigest()
    if [x[0] for x in rows] != [want]:
        bad.append("artifact %d published as %s, wanted once as %s" % (r, rows, want))
for b in bad[:30]:
    print("  " + b)
sys.exit(1 if bad else 0)
P
"$KILN_BIN" catalog verify --data "$D" >"$T/verify.log" 2>&1 || { cat "$T/verify.log"; fail "catalog verify"; }
faults=""
for f in "${FAULTS[@]}"; do faults="$faults $f=${done_count[$f]:-0}"; done
# What the faults caused, as the server and workers saw it (figures only).
attempts=$(sqlite3 "$D/kiln.db" "SELECT COALESCE(SUM(attempt), 0) - COUNT(*) FROM jobs" 2>/dev/null)
nospace=$(cat "$T/serve.log" "$T"/c*.log | grep -ci 'no space left')
locked=$(cat "$T/serve.log" "$T"/c*.log | grep -ci 'database is locked\|busy')
echo "PASS chaos faults (seed $SEED): $ROUNDS faults ($faults; disk on $DISK), $NJOBS jobs each ended once in their intended state with complete logs, $ROUNDS artifacts published once each, catalog verify clean, service recovered; $attempts extra attempts, $nospace no-space and $locked busy-database messages logged"
