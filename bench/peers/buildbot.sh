#!/usr/bin/env bash
# bench/peers/buildbot.sh - the same no-op jobs through Buildbot (Debian's
# buildbot + buildbot-worker): a master and one worker on loopback, one
# builder whose single step runs `true`, max_builds = CORES, request
# collapsing off. N builds are forced through the REST API before the
# worker connects (as kiln's bench queues before its worker starts); the
# figure is N / (last complete_at - first started_at) from Buildbot's own
# build records (whole seconds: about +-1 s over the run).
#
#   bash bench/peers/buildbot.sh [N=100] [CORES=2]   -> "peer buildbot N=.. jobs/s X"
set -eu
N=${1:-100}
CORES=${2:-2}
command -v buildbot >/dev/null && command -v buildbot-worker >/dev/null ||
    { echo "peer buildbot: not installed (bash bench/peers/install.sh)"; exit 77; }
T=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bb-XXXXXX")
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PB=$(free_port)
WWW=$(free_port)
cleanup() {
    buildbot-worker stop "$T/worker" >/dev/null 2>&1 || true
    buildbot stop "$T/master" >/dev/null 2>&1 || true
    [ -n "${KEEP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT
buildbot create-master -r "$T/master" >/dev/null
cat >"$T/master/master.cfg" <<CFG
from buildbot.plugins import schedulers, steps, util, worker
c = BuildmasterConfig = {}
c['workers'] = [worker.Worker("w1", "pass", max_builds=$CORES)]
c['protocols'] = {'pb': {'port': "tcp:$PB:interface=127.0.0.1"}}
c['schedulers'] = [schedulers.ForceScheduler(name="force", builderNames=["noop"])]
c['builders'] = [util.BuilderConfig(name="noop", workernames=["w1"],
                 factory=util.BuildFactory([steps.ShellCommand(command=["true"])]))]
c['collapseRequests'] = False
c['www'] = {'port': "tcp:$WWW:interface=127.0.0.1", 'plugins': {}}
c['db'] = {'db_url': "sqlite:///state.sqlite"}
c['buildbotNetUsageData'] = None
c['title'] = "kiln bench peer"
c['buildbotURL'] = "http://127.0.0.1:$WWW/"
CFG
# `buildbot start` gives up watching after 10 s; on a loaded machine the
# master takes longer, so readiness is the REST API answering (below).
buildbot start "$T/master" >"$T/master.start.log" 2>&1 || true
python3 - "$WWW" "$N" <<'PY'
import http.client, json, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
def call(method, path, body=None):
    c.request(method, path, body=json.dumps(body) if body else None,
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    return r.status, json.loads(r.read() or b"null")
end = time.time() + 180
while True:
    try:
        st, d = call("GET", "/api/v2/builders")
        if st == 200 and d["builders"]:
            break
    except (OSError, http.client.HTTPException):
        c.close()
    if time.time() > end:
        raise SystemExit("buildbot master did not answer within 180 s")
    time.sleep(0.2)
bid = d["builders"][0]["builderid"]
for i in range(n):
    st, d = call("POST", "/api/v2/forceschedulers/force",
                 {"jsonrpc": "2.0", "method": "force", "id": i, "params": {"builderid": str(bid)}})
    if st != 200 or "error" in d:
        raise SystemExit("force: %d %s" % (st, d))
PY
buildbot-worker create-worker "$T/worker" "127.0.0.1:$PB" w1 pass >/dev/null
buildbot-worker start "$T/worker" >"$T/worker.start.log" 2>&1 || true
python3 - "$WWW" "$N" "$CORES" <<'PY'
import http.client, json, sys, time
port, n, cores = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
end = time.time() + 1800
while True:
    c.request("GET", "/api/v2/builds?complete=true")
    d = json.loads(c.getresponse().read())
    if len(d["builds"]) >= n:
        break
    if time.time() > end:
        raise SystemExit("buildbot: only %d of %d builds done" % (len(d["builds"]), n))
    time.sleep(0.5)
b = d["builds"]
bad = [x for x in b if x["results"] != 0]
if bad:
    raise SystemExit("buildbot: %d builds did not succeed" % len(bad))
span = max(x["complete_at"] for x in b) - min(x["started_at"] for x in b)
print("peer buildbot N=%d cores=%s jobs/s %.2f (span %d s, whole seconds)" % (n, cores, n / max(span, 1), span))
PY
