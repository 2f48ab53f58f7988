#!/usr/bin/env bash
# Git watcher end to end with a real bare repository and real `git push`:
#  - changing one variant's file enqueues exactly that variant (and dependents)
#  - changing a shared lib file enqueues all that use it
#  - changing the README enqueues nothing
#  - a push while a build runs supersedes it (the worker stops it)
#  - a force-push is handled (tree diff against the old head)
#  - poll-only mode notices a push within poll interval + 1 s
#  - webhooks: bad/missing signature -> 401 and nothing enqueued; replay -> duplicate; valid -> jobs
set -u
KILN=${KILN_BIN:?}
T=$(mktemp -d /tmp/kiln-git-XXXXXX)
pids=()
cleanup() {
    # newest first (the worker before the server); a second TERM makes the
    # worker hand its running job back instead of waiting for it
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill -TERM "${pids[i]}" 2>/dev/null; sleep 0.3; kill -TERM "${pids[i]}" 2>/dev/null
        for _ in $(seq 150); do kill -0 "${pids[i]}" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "${pids[i]}" 2>/dev/null
        wait "${pids[i]}" 2>/dev/null
    done
    rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; echo "--- serve log"; tail -30 "$T/serve.log"; exit 1; }
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

git init -q --bare "$T/origin.git"
git init -q --bare "$T/hooked.git"
git init -q -b main "$T/work"
cd "$T/work"
git config user.email t@t; git config user.name t
mkdir -p recipes pkgs/common
cat > recipes/lib.yaml <<'Y'
recipe: lib
default_branch: main
axes:
  v: [x]
branches: {main: {}}
templates:
  name: "lib-{v}"
  command: "sleep 60"
resources: {cores: 1, ram_mb: 64}
inputs: ["pkgs/{name}.nix", "pkgs/common/**"]
Y
cat > recipes/app.yaml <<'Y'
recipe: app
default_branch: main
axes:
  v: [a, b]
branches: {main: {}}
templates:
  name: "app-{v}"
  command: "sleep 60"
resources: {cores: 1, ram_mb: 64}
depends:
  - recipe: lib
    name: "lib-x"
inputs: ["pkgs/{name}.nix", "pkgs/common/**"]
Y
for f in lib-x app-a app-b; do echo "$f 1" > pkgs/$f.nix; done
echo common > pkgs/common/util.nix
echo readme > README.md
git add -A; git commit -qm init
git push -q "$T/origin.git" main
git push -q "$T/hooked.git" main
git init -q --bare "$T/own.git" && git push -q "$T/own.git" main

PORT=$(free_port)
URL=http://127.0.0.1:$PORT
cat > "$T/kiln.yaml" <<Y
repos:
  - name: app
    url: $T/origin.git
    branches: main
    recipes: [recipes/lib.yaml, recipes/app.yaml]
    poll_s: 1
    initial_build: false
  - name: hooked
    url: $T/hooked.git
    recipes: [recipes/lib.yaml, recipes/app.yaml]
    poll_s: 0
    initial_build: false
  - name: own
    url: $T/own.git
    recipes: [recipes/lib.yaml, recipes/app.yaml]
    poll_s: 0
    initial_build: false
    secret: its-own
hooks:
  secret: s3cret
Y
ADMIN=$("$KILN" token create --data "$T/data" --role admin | grep -oE 'kiln_[0-9a-f]{48}')
WTOK=$("$KILN" token create --data "$T/data" --role worker | grep -oE 'kiln_[0-9a-f]{48}')
"$KILN" serve --listen 127.0.0.1:$PORT --data "$T/data" --config "$T/kiln.yaml" >"$T/serve.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do curl -fs "$URL/healthz" >/dev/null && break; sleep 0.1; done
H=(-H "Authorization: Bearer $ADMIN")

# names of jobs for a commit, sorted, as "a b c"
jobs_for() { curl -fs "${H[@]}" "$URL/api/v1/jobs?limit=1000" | python3 -c "
import json,sys; c=sys.argv[1]
print(' '.join(sorted(j['name'] for j in json.load(sys.stdin)['jobs'] if j.get('commit')==c)))" "$1"; }
state_of() { curl -fs "${H[@]}" "$URL/api/v1/jobs?limit=1000" | python3 -c "
import json,sys; c,n=sys.argv[1],sys.argv[2]
print(' '.join(j['state'] for j in json.load(sys.stdin)['jobs'] if j.get('commit')==c and j['name']==n))" "$1" "$2"; }
wait_jobs() { # commit expected max_seconds (stretched: a busy machine is not a failure)
    local end=$((SECONDS + $3 * 10)) got
    while [ $SECONDS -le $end ]; do got=$(jobs_for "$1"); [ "$got" = "$2" ] && return 0; sleep 0.2; done
    fail "commit $1: expected jobs '$2', got '$(jobs_for "$1")'"
}
push() { git commit -qam "$1"; git push -q "$T/origin.git" main; git rev-parse HEAD; }

# wait until the watcher has recorded the first head (no builds: initial_build false)
for _ in $(seq 50); do curl -fs "${H[@]}" "$URL/api/v1/repos" | grep -q "$(git rev-parse HEAD)" && break; sleep 0.2; done
curl -fs "${H[@]}" "$URL/api/v1/repos" | grep -q "$(git rev-parse HEAD)" || fail "watcher never saw the first commit"
echo "ok: first commit recorded without building"

# 1. one variant's file -> exactly that variant, noticed by polling alone
# within the poll interval (1 s) plus one second
echo "app-a 2" > pkgs/app-a.nix
git commit -qam "change app-a"
t0=$(date +%s%3N)
git push -q "$T/origin.git" main
C1=$(git rev-parse HEAD)
until curl -fs "${H[@]}" "$URL/api/v1/jobs?limit=50" | grep -q "\"commit\":\"$C1\""; do
    [ $(( $(date +%s%3N) - t0 )) -gt 60000 ] && fail "push not noticed in 60 s"
    sleep 0.02
done
ms=$(( $(date +%s%3N) - t0 ))
# The latency bound is a property of a quiet machine: held there, reported
# (not failed) when the machine is busier than its cores.
busy=$(awk -v n="$(nproc)" '{print ($1 > n) ? 1 : 0}' /proc/loadavg)
if [ "$ms" -gt 2000 ]; then
    [ "$busy" = 1 ] || fail "poll-only mode took $ms ms to notice the push (limit: poll 1 s + 1 s)"
    echo "note: $ms ms > 2000 ms on a busy machine (load $(cut -d' ' -f1 /proc/loadavg)); not held"
fi
wait_jobs "$C1" "app-a" 3
echo "ok: app-a change enqueued exactly app-a, noticed by polling in $ms ms (poll 1 s, limit 2000 ms)"

# 2. a dependency's file -> it and its dependents
echo "lib-x 2" > pkgs/lib-x.nix
C2=$(push "change lib-x")
wait_jobs "$C2" "app-a app-b lib-x" 3
echo "ok: lib-x change enqueued lib-x and its dependents"

# 3. shared lib file -> all that use it
echo "common 2" > pkgs/common/util.nix
C3=$(push "change common")
wait_jobs "$C3" "app-a app-b lib-x" 3
echo "ok: shared file change enqueued all"
# the older queued twins were superseded
s=$(state_of "$C1" app-a); [ "$s" = superseded ] || fail "app-a of $C1 should be superseded, is '$s'"
echo "ok: older queued builds superseded"

# 4. README -> nothing
echo "readme 2" > README.md
C4=$(push "readme")
sleep 2.5
[ -z "$(jobs_for "$C4")" ] || fail "README change enqueued: $(jobs_for "$C4")"
curl -fs "${H[@]}" "$URL/api/v1/repos" | grep -q "$C4" || fail "watcher did not record $C4"
echo "ok: README change enqueued nothing"

# 5. a push while a build runs supersedes the running build
"$KILN" worker --server "$URL" --token "$WTOK" --name w1 --cores 2 --ram 1G --work-dir "$T/work-w1" >"$T/worker.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ "$(state_of "$C3" lib-x)" = building ] && break; sleep 0.1; done
[ "$(state_of "$C3" lib-x)" = building ] || fail "lib-x of $C3 never started building"
echo "lib-x 3" > pkgs/lib-x.nix
C5=$(push "change lib-x again")
wait_jobs "$C5" "app-a app-b lib-x" 3
for _ in $(seq 30); do [ "$(state_of "$C3" lib-x)" = superseded ] && break; sleep 0.1; done
[ "$(state_of "$C3" lib-x)" = superseded ] || fail "running lib-x of $C3 not superseded: $(state_of "$C3" lib-x)"
for _ in $(seq 50); do [ "$(state_of "$C5" lib-x)" = building ] && break; sleep 0.1; done
[ "$(state_of "$C5" lib-x)" = building ] || fail "new lib-x of $C5 did not start: $(state_of "$C5" lib-x)"
echo "ok: push during a running build superseded it and the new build started"

# 6. force-push: replace the last commit with one that changes app-b only
echo "readme 3" > README.md
C6=$(push "readme again")
sleep 2.5
git reset -q --hard HEAD~1
echo "app-b 2" > pkgs/app-b.nix
git commit -qam "app-b instead"
git push -qf "$T/origin.git" main
C7=$(git rev-parse HEAD)
wait_jobs "$C7" "app-b" 3
grep -q "force-push" "$T/serve.log" || fail "force-push not noticed in the log"
echo "ok: force-push handled (diff against the replaced head)"

# 7. webhooks on the poll-less repo
cd "$T/work" && git checkout -q -b hooked-main "$(git rev-list --max-parents=0 HEAD)"
echo "app-b hook" > pkgs/app-b.nix
git commit -qam "hooked change"
git push -q "$T/hooked.git" HEAD:main
HC=$(git rev-parse HEAD)
body="{\"ref\":\"refs/heads/main\",\"after\":\"$HC\",\"repository\":{\"clone_url\":\"$T/hooked.git\",\"full_name\":\"o/hooked\"}}"
sig="sha256=$(printf '%s' "$body" | openssl dgst -sha256 -hmac s3cret | sed 's/^.*= //')"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'X-GitHub-Event: push' -H 'X-GitHub-Delivery: d1' -H 'X-Hub-Signature-256: sha256=0000' --data "$body" "$URL/api/v1/hooks/github")
[ "$code" = 401 ] || fail "bad signature got $code"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'X-GitHub-Event: push' -H 'X-GitHub-Delivery: d1' --data "$body" "$URL/api/v1/hooks/github")
[ "$code" = 401 ] || fail "missing signature got $code"
sleep 1.5
[ -z "$(jobs_for "$HC")" ] || fail "unsigned webhook enqueued jobs"
echo "ok: bad and missing signatures -> 401, nothing enqueued"
t0=$(date +%s%N)
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'X-GitHub-Event: push' -H 'X-GitHub-Delivery: d2' -H "X-Hub-Signature-256: $sig" --data "$body" "$URL/api/v1/hooks/github")
[ "$code" = 202 ] || fail "valid webhook got $code"
wait_jobs "$HC" "app-b" 5
echo "ok: valid webhook -> app-b enqueued in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
code=$(curl -s -o "$T/dup.json" -w '%{http_code}' -X POST -H 'X-GitHub-Event: push' -H 'X-GitHub-Delivery: d2' -H "X-Hub-Signature-256: $sig" --data "$body" "$URL/api/v1/hooks/github")
grep -q duplicate "$T/dup.json" || fail "replayed delivery not recognised ($code)"
echo "ok: replayed delivery -> duplicate, nothing enqueued"
# Issue 16: the delivery id is not signed, so a replay under a new id is
# still the same signed body: caught (the old code accepted it as new).
code=$(curl -s -o "$T/dup2.json" -w '%{http_code}' -X POST -H 'X-GitHub-Event: push' -H 'X-GitHub-Delivery: d-forged' -H "X-Hub-Signature-256: $sig" --data "$body" "$URL/api/v1/hooks/github")
grep -q duplicate "$T/dup2.json" || fail "replay under a new delivery id accepted ($code)"
echo "ok: replay under a forged delivery id -> duplicate"
# Issue 16: a POST to exactly /api/v1/hooks names no forge (the old code read
# the query string as one).
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'X-GitHub-Event: push' -H 'X-GitHub-Delivery: d5' -H "X-Hub-Signature-256: $sig" --data "$body" "$URL/api/v1/hooks?github")
[ "$code" = 404 ] || fail "POST /api/v1/hooks?github got $code"
echo "ok: POST /api/v1/hooks?github -> 404"
# Issue 16: a repository with its own secret is not triggered by the global one.
obody="{\"ref\":\"refs/heads/main\",\"after\":\"$HC\",\"repository\":{\"clone_url\":\"$T/own.git\",\"full_name\":\"o/own\"}}"
osig="sha256=$(printf '%s' "$obody" | openssl dgst -sha256 -hmac s3cret | sed 's/^.*= //')"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'X-GitHub-Event: push' -H 'X-GitHub-Delivery: d6' -H "X-Hub-Signature-256: $osig" --data "$obody" "$URL/api/v1/hooks/github")
[ "$code" = 401 ] || fail "global secret triggered a repository with its own secret: $code"
osig="sha256=$(printf '%s' "$obody" | openssl dgst -sha256 -hmac its-own | sed 's/^.*= //')"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'X-GitHub-Event: push' -H 'X-GitHub-Delivery: d7' -H "X-Hub-Signature-256: $osig" --data "$obody" "$URL/api/v1/hooks/github/own")
[ "$code" = 202 ] || fail "own secret on its own path got $code"
echo "ok: a repository with its own secret answers to that secret only"
echo "PASS"
