#!/usr/bin/env bash
# Commit statuses end to end (issue 15): a real push to a tracked repository,
# real jobs on `kiln worker` (one variant passes, one fails), and a local
# forge stub (forge_stub.py) that checks the request shapes GitHub,
# Gitea/Forgejo and GitLab document.
#  - each forge sees, per variant and for the commit's summary, exactly
#    pending -> success|failure (GitLab: failed), with a link to the build page;
#  - the GitHub stub answers 500 until told otherwise: kiln retries it with
#    backoff; meanwhile the jobs finish (the farm does not wait for a forge)
#    and GET /api/v1/statuses says its reports are late; the Gitea stub fails
#    its first 3 requests and still gets every state, in order.
set -u
KILN=${KILN_BIN:?}
SRC=${KILN_SRC:?}
T=$(mktemp -d /tmp/kiln-forge-XXXXXX)
. "$SRC/tests/integration/lib_stop.sh"
. "$SRC/tests/integration/lib_serve.sh"
WPID="" STUB=""
cleanup() {
    stop_pid "$WPID"
    stop_pid "$SERVE_PID"
    stop_pid "$STUB"
    rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; tail -30 "$T/d.serve.log"; tail -10 "$T/worker.log"; exit 1; }

python3 "$SRC/tests/integration/forge_stub.py" "$T/stub.port" &
STUB=$!
for _ in $(seq 100); do [ -s "$T/stub.port" ] && break; sleep 0.05; done
SP=$(cat "$T/stub.port") || fail "the forge stub did not start"
F=http://127.0.0.1:$SP
stubfail() { curl -fs -X POST -d "{\"prefix\":\"$1\",\"count\":$2}" "$F/_fail" >/dev/null; }
stubfail /gh -1   # GitHub is down until the jobs are done
stubfail /gitea 3 # Gitea fails its first three requests

git init -q --bare "$T/origin.git"
git init -q -b main "$T/work"
cd "$T/work"
git config user.email t@t; git config user.name t
mkdir -p recipes pkgs
cat > recipes/st.yaml <<'Y'
recipe: st
default_branch: main
axes:
  v: [ok, bad]
branches: {main: {}}
templates:
  name: "st-{v}"
  command: "sh pkgs/run.sh {v}"
resources: {cores: 1, ram_mb: 64}
inputs: ["pkgs/**"]
Y
echo 0 > pkgs/stamp
printf '%s\n' 'test "$1" = ok || { echo "variant $1 fails on purpose" >&2; exit 4; }' > pkgs/run.sh
git add -A; git commit -qm init; git push -q "$T/origin.git" main
cat > "$T/kiln.yaml" <<Y
repos:
  - name: st
    url: $T/origin.git
    branches: main
    recipes: [recipes/st.yaml]
    poll_s: 1
    initial_build: false
statuses:
  page_url: https://kiln.example/
  retry_base_s: 0.2
  retry_max_s: 1
  repos:
    - {url: $T/origin.git, forge: github, api: $F/gh, repo: o/r, token: tok-gh}
    - {url: $T/origin.git, forge: gitea, api: $F/gitea, repo: o/r, token_env: GITEA_TOKEN}
    - {url: $T/origin.git, forge: gitlab, api: $F/gitlab, repo: grp/proj, token: tok-gitlab}
Y
WT=$("$KILN" token create --data "$T/d" --role worker | grep -oE 'kiln_[0-9a-f]{48}')
GITEA_TOKEN=tok-gitea start_serve "$T/d" --config "$T/kiln.yaml" --allow-anonymous-read ||
    fail "serve did not start"
B=http://127.0.0.1:$PORT
mkdir -p "$T/bin"; cp "$KILN" "$T/bin/kiln"
"$T/bin/kiln" worker --server "$B" --token "$WT" --work-dir "$T/wd" --name w1 --cores 2 \
    --ram 4G >"$T/worker.log" 2>&1 &
WPID=$!
for _ in $(seq 100); do curl -fs "$U/repos" | grep -q "$(git rev-parse HEAD)" && break; sleep 0.1; done

echo 1 > pkgs/stamp; git commit -qam "change both variants"; git push -q "$T/origin.git" main
C=$(git rev-parse HEAD)
states="" t0=$SECONDS
for _ in $(seq 600); do
    states=$(curl -fs "$U/jobs?limit=10" | python3 -c "
import json,sys
print(' '.join(sorted('%s:%s' % (j['name'], j['state']) for j in json.load(sys.stdin)['jobs'] if j.get('commit')=='$C')))")
    [ "$states" = "st-bad:failed st-ok:succeeded" ] && break
    [ -z "$states" ] && [ $SECONDS -gt $((t0 + 60)) ] && fail "no job for ${C:0:12} after 60 s"
    sleep 0.1
done
[ "$states" = "st-bad:failed st-ok:succeeded" ] || fail "jobs of ${C:0:12}: '$states'"
# The farm finished while GitHub kept failing: its reports wait, marked late.
st=$(curl -fs "$U/statuses")
python3 - "$st" <<'PY' || fail "GitHub reports should be late: $st"
import json, sys
gh = [f for f in json.loads(sys.argv[1])["forges"] if f["forge"] == "github"][0]
assert gh["late"] and gh["queued"] > 0 and gh["sent"] == 0 and gh["failures"] >= 1, gh
assert "500" in (gh["last_error"] or ""), gh
PY
echo "ok: both jobs finished while the GitHub stub answered 500; /api/v1/statuses says its reports are late"
stubfail /gh 0
for _ in $(seq 300); do
    curl -fs "$U/statuses" | python3 -c "
import json,sys
sys.exit(0 if all(f['queued']==0 for f in json.load(sys.stdin)['forges']) else 1)" && break
    sleep 0.1
done
curl -fs "$F/_log" > "$T/log.json"
curl -fs "$U/jobs?limit=10" > "$T/jobs.json"
python3 - "$T/log.json" "$T/jobs.json" "$C" <<'PY' || fail "statuses seen by the stub: $(head -c 3000 "$T/log.json")"
import json, sys
log = json.load(open(sys.argv[1])); c = sys.argv[3]
jobs = {j["name"]: j["id"] for j in json.load(open(sys.argv[2]))["jobs"] if j.get("commit") == c}
bad = [r for r in log if r["bad"]]
assert not bad, "badly shaped requests: %s" % bad[:3]
fails = {f: sum(1 for r in log if r["forge"] == f and r["answer"] == 500) for f in ("github", "gitea", "gitlab")}
assert fails["github"] >= 2 and fails["gitea"] == 3 and fails["gitlab"] == 0, fails
want = {"kiln/st-ok": "success", "kiln/st-bad": "failure", "kiln": "failure"}
for forge in ("github", "gitea", "gitlab"):
    got = {}
    for r in log:
        if r["forge"] != forge or r["answer"] != 201:
            continue
        b = r["body"]
        assert r["sha"] == c, r
        ctx = b.get("context") or b.get("name")
        got.setdefault(ctx, []).append(b["state"])
        if ctx != "kiln":
            assert b["target_url"] == "https://kiln.example/#/build/%d" % jobs[ctx[5:]], b
        else:
            assert b["target_url"] == "https://kiln.example/#/queue?branch=main", b
        if forge == "gitlab":
            assert r["project"] == "grp%2Fproj", r
    for ctx, end in want.items():
        if forge == "gitlab" and end == "failure":
            end = "failed"
        assert got.get(ctx) == ["pending", end], (forge, ctx, got.get(ctx), got)
    assert set(got) == set(want), (forge, sorted(got))
    print("ok: %s saw pending -> end for st-ok, st-bad and the summary (%d retried 500s)" % (forge, fails[forge]))
PY
echo PASS
