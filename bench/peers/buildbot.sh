#!/usr/bin/env bash
# bench/peers/buildbot.sh - the same no-op jobs through Buildbot (Debian's
# buildbot + buildbot-worker): a master and one worker on loopback, one
# builder whose single step runs `true`, max_builds = CORES, request
# collapsing off. N changes are sent over PB (one process, Buildbot's own
# sendchange client) before the worker connects, as kiln's bench queues
# before its worker starts; each change starts one build (treeStableTimer
# None). Debian 12 has no buildbot-www, so the master runs without its web
# service and the figure comes from its database: N / (last complete_at -
# first started_at) of the builds (whole seconds: about +-1 s).
#
#   bash bench/peers/buildbot.sh [N=100] [CORES=2]   -> "peer buildbot N=.. jobs/s X"
# PEERS_PROFILE=1: perf records the whole machine (-a) from the worker's
# start to the last build and prints the share of samples per command
# ("profile buildbot:" lines).
set -eu
N=${1:-100}
CORES=${2:-2}
command -v buildbot >/dev/null && command -v buildbot-worker >/dev/null ||
    { echo "peer buildbot: not installed (bash bench/peers/install.sh)"; exit 77; }
T=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bb-XXXXXX")
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PB=$(free_port)
cleanup() {
    buildbot-worker stop "$T/worker" >/dev/null 2>&1 || true
    buildbot stop "$T/master" >/dev/null 2>&1 || true
    [ -n "${KEEP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT
buildbot create-master -r "$T/master" >/dev/null
cat >"$T/master/master.cfg" <<CFG
from buildbot.plugins import changes, schedulers, steps, util, worker
c = BuildmasterConfig = {}
c['workers'] = [worker.Worker("w1", "pass", max_builds=$CORES)]
c['protocols'] = {'pb': {'port': "tcp:$PB:interface=127.0.0.1"}}
c['change_source'] = [changes.PBChangeSource(user="change", passwd="changepw")]
c['schedulers'] = [schedulers.AnyBranchScheduler(name="all", treeStableTimer=None,
                                                 builderNames=["noop"])]
c['builders'] = [util.BuilderConfig(name="noop", workernames=["w1"],
                 factory=util.BuildFactory([steps.ShellCommand(command=["true"])]))]
c['collapseRequests'] = False
c['db'] = {'db_url': "sqlite:///state.sqlite"}
c['buildbotNetUsageData'] = None
c['title'] = "kiln bench peer"
c['buildbotURL'] = "http://127.0.0.1/"
CFG
# `buildbot start` gives up watching after 10 s; on a loaded machine the
# master takes longer, so readiness is the REST API answering (below).
buildbot start "$T/master" >"$T/master.start.log" 2>&1 || true
for _ in $(seq 1 900); do
    grep -q 'BuildMaster is running' "$T/master/twistd.log" 2>/dev/null && break
    grep -q 'BuildMaster startup failed' "$T/master/twistd.log" 2>/dev/null && { tail -30 "$T/master/twistd.log"; exit 1; }
    sleep 0.2
done
/usr/bin/python3 - "$PB" "$N" <<'PY'
import sys
from twisted.internet import defer, reactor
from buildbot.clients import sendchange
pb, n = sys.argv[1], int(sys.argv[2])
s = sendchange.Sender("127.0.0.1:" + pb, auth=("change", "changepw"))
failed = []
@defer.inlineCallbacks
def go():
    try:
        for i in range(n):
            yield s.send("main", str(i), "bench change %d" % i, ["f"], who="bench")
    except Exception as e:
        failed.append(e)
    reactor.stop()
reactor.callWhenRunning(go)
reactor.run()
if failed:
    raise SystemExit("sendchange: %s" % failed[0])
PY
buildbot-worker create-worker "$T/worker" "127.0.0.1:$PB" w1 pass >/dev/null
prof=
if [ -n "${PEERS_PROFILE:-}" ] && command -v perf >/dev/null; then
    perf record -a -F 499 -q -o "$T/perf.data" -- sleep 3600 >/dev/null 2>&1 &
    prof=$!
    sleep 1
fi
buildbot-worker start "$T/worker" >"$T/worker.start.log" 2>&1 || true
result=$(python3 - "$T/master/state.sqlite" "$N" "$CORES" <<'PY'
import sqlite3, sys, time
db, n, cores = sys.argv[1], int(sys.argv[2]), sys.argv[3]
end = time.time() + 1800
while True:
    c = sqlite3.connect(db, timeout=30)
    rows = c.execute("SELECT started_at, complete_at, results FROM builds "
                     "WHERE complete_at IS NOT NULL").fetchall()
    c.close()
    if len(rows) >= n:
        break
    if time.time() > end:
        raise SystemExit("buildbot: only %d of %d builds done" % (len(rows), n))
    time.sleep(0.5)
bad = [r for r in rows if r[2] != 0]
if bad:
    raise SystemExit("buildbot: %d builds did not succeed" % len(bad))
span = max(r[1] for r in rows) - min(r[0] for r in rows)
print("peer buildbot N=%d cores=%s jobs/s %.2f (span %d s, whole seconds)" % (len(rows), cores, len(rows) / max(span, 1), span))
PY
)
if [ -n "$prof" ]; then
    kill -INT "$prof" && wait "$prof" || true
    perf report -i "$T/perf.data" --sort comm --stdio -q 2>/dev/null | awk 'NF' | head -12 |
        sed 's/^ */profile buildbot: /'
fi
echo "$result"
