#!/usr/bin/env bash
# Crash recovery under load: 200 jobs on two real workers; kiln serve is
# killed with SIGKILL at 20 random moments and restarted on the same port
# and data dir. Afterwards every job must have succeeded, and the workers'
# own records (each job appends "start"/"end" lines to a shared file) must
# show every job run to completion exactly once, never two runs of one job
# at the same time.
set -u
KILN=${KILN_BIN:?}
T=$(mktemp -d /tmp/kiln-crash200-XXXXXX)
SERVE=""; W1=""; W2=""
cleanup() {
    for p in $W1 $W2 $SERVE; do kill -TERM "$p" 2>/dev/null; done
    sleep 0.5
    for p in $W1 $W2 $SERVE; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; tail -20 "$T/serve.log"; exit 1; }
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
U=http://127.0.0.1:$PORT
ADMIN=$("$KILN" token create --data "$T/d" --role admin | grep -oE 'kiln_[0-9a-f]{48}')
WT=$("$KILN" token create --data "$T/d" --role worker | grep -oE 'kiln_[0-9a-f]{48}')
start_serve() {
    "$KILN" serve --listen 127.0.0.1:$PORT --data "$T/d" >>"$T/serve.log" 2>&1 &
    SERVE=$!
    for _ in $(seq 100); do curl -fs "$U/healthz" >/dev/null 2>&1 && return 0; sleep 0.05; done
    fail "serve did not come back"
}
start_serve
REC=$T/records
: > "$REC"
# 200 jobs: each records start and end with its name, sleeps 0.2-0.6 s.
python3 - "$U" "$ADMIN" "$REC" <<'PY'
import json, sys, urllib.request, random
u, tok, rec = sys.argv[1:4]
random.seed(7)
for i in range(200):
    d = 0.2 + random.random() * 0.4
    cmd = f"echo start c{i} $$ >> {rec}; sleep {d:.2f}; echo end c{i} $$ >> {rec}"
    body = json.dumps({"name": f"c{i}", "command": cmd, "cores": 1, "ram_mb": 64}).encode()
    r = urllib.request.Request(u + "/api/v1/jobs", data=body, method="POST",
        headers={"Authorization": "Bearer " + tok, "Content-Type": "application/json"})
    urllib.request.urlopen(r).read()
PY
"$KILN" worker --server "$U" --token "$WT" --name w1 --cores 4 --ram 2G --work-dir "$T/w1" >"$T/w1.log" 2>&1 &
W1=$!
"$KILN" worker --server "$U" --token "$WT" --name w2 --cores 4 --ram 2G --work-dir "$T/w2" >"$T/w2.log" 2>&1 &
W2=$!
succeeded() { curl -fs -H "Authorization: Bearer $ADMIN" "$U/api/v1/jobs?state=succeeded&limit=1000" | grep -o '"id":' | wc -l; }
for k in $(seq 20); do
    sleep "$(python3 -c 'import random;print(round(0.3+random.random()*0.9,2))')"
    kill -KILL "$SERVE" 2>/dev/null; wait "$SERVE" 2>/dev/null
    sleep "$(python3 -c 'import random;print(round(random.random()*0.5,2))')"
    start_serve
done
echo "20 kills done; waiting for the queue to drain"
for _ in $(seq 600); do [ "$(succeeded)" -ge 200 ] && break; sleep 0.2; done
n=$(succeeded)
[ "$n" -eq 200 ] || fail "only $n of 200 jobs succeeded: $(curl -fs -H "Authorization: Bearer $ADMIN" "$U/api/v1/jobs?limit=1000" | grep -o '"state":"[a-z]*"' | sort | uniq -c | tr '\n' ' ')"
python3 - "$REC" <<'PY' || exit 1
import sys, collections
ends = collections.Counter(); starts = collections.Counter(); running = {}; overlap = []
for line in open(sys.argv[1]):
    kind, job, pid = line.split()
    if kind == "start":
        if running.get(job): overlap.append(job)
        running[job] = running.get(job, 0) + 1; starts[job] += 1
    else:
        running[job] -= 1; ends[job] += 1
bad = [j for j in (f"c{i}" for i in range(200)) if ends[j] != 1]
if overlap: print("FAIL: jobs ran twice at the same time:", overlap[:10]); sys.exit(1)
if bad: print("FAIL: jobs not finished exactly once:", [(j, starts[j], ends[j]) for j in bad[:10]]); sys.exit(1)
print(f"ok: 200 jobs, each ran to completion exactly once ({sum(starts.values())} starts); no overlapping runs")
PY
echo PASS
