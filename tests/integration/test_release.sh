#!/usr/bin/env bash
# Releases end to end (issue 15): real pushes to a tracked repository, real
# jobs on `kiln worker`, real store paths (nix-store --add) published by the
# server. The recipe says `publish: release`: a commit's three variants are
# shown all at once or not at all (KILN_TEST_RELEASE_VIA=repo: the tracked
# repository says so instead).
#  - one variant fails: nothing of that commit is in the catalog, and its
#    staged paths are served from /nix-cache to worker credentials and
#    admins only (a reader gets 404), the release is "held" by that
#    variant with its reason (API, kiln release ls|show);
#  - its retry passes: all three appear at once;
#  - a newer push supersedes an unfinished release, whose entries never show;
#  - all along, a poller reads GET /api/v1/catalog as fast as it can and
#    never sees a commit with 1 or 2 of its 3 variants.
set -u
KILN=${KILN_BIN:?}
SRC=${KILN_SRC:?}
command -v nix-store >/dev/null || { echo "SKIP nix-store not installed"; exit 77; }
T=$(mktemp -d /tmp/kiln-release-XXXXXX)
. "$SRC/tests/integration/lib_stop.sh"
. "$SRC/tests/integration/lib_serve.sh"
WPID="" POLLPID=""
cleanup() {
    [ -n "$POLLPID" ] && stop_pid "$POLLPID"
    stop_pid "$WPID"
    stop_pid "$SERVE_PID"
    rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; tail -30 "$T/d.serve.log"; tail -15 "$T/worker.log"; exit 1; }

git init -q --bare "$T/origin.git"
git init -q -b main "$T/work"
cd "$T/work"
git config user.email t@t; git config user.name t
mkdir -p recipes pkgs
# Each variant adds a file to the Nix store (its content names the variant
# and the commit, so every commit gives new paths) and reports it. A flag
# file outside the repository makes one variant fail, so that a retry of the
# same commit can pass.
cat > pkgs/build.sh <<SH
set -e
v=\$1
if [ -e "$T/fail-\$v" ]; then echo "variant \$v: told to fail by $T/fail-\$v" >&2; exit 3; fi
mkdir -p out; echo "variant \$v of \$(git rev-parse HEAD 2>/dev/null || cat pkgs/stamp)" > out/rel-\$v.txt
cat pkgs/stamp >> out/rel-\$v.txt
p=\$(nix-store --add out/rel-\$v.txt)
printf '{"outputs":["%s"]}' "\$p" > "\$KILN_REPORT_FILE"
SH
cat > recipes/rel.yaml <<'Y'
recipe: rel
default_branch: main
axes:
  v: [a, b, c]
branches: {main: {}}
templates:
  name: "rel-{v}"
  command: "sh pkgs/build.sh {v}"
resources: {cores: 1, ram_mb: 64}
inputs: ["pkgs/**"]
Y
# The recipe says `publish: release` (default), or, with
# KILN_TEST_RELEASE_VIA=repo, the tracked repository does (and auto_publish
# is off: a release branch publishes anyway).
VIA=${KILN_TEST_RELEASE_VIA:-recipe}
[ "$VIA" = recipe ] && echo "publish: release" >> recipes/rel.yaml
echo 0 > pkgs/stamp
git add -A; git commit -qm init; git push -q "$T/origin.git" main

# Retention would drop the staged rows of promoted paths at its next pass
# (every 60 s by default); the check of who may fetch a held release's
# staged paths needs them staged, so retention waits an hour here.
cat > "$T/kiln.yaml" <<Y
staging: {prune_interval_s: 3600}
repos:
  - name: rel
    url: $T/origin.git
    branches: main
    recipes: [recipes/rel.yaml]
    poll_s: 1
    initial_build: false
Y
if [ "$VIA" = recipe ]; then echo "    auto_publish: true" >> "$T/kiln.yaml"
else echo "    publish: {release: [main]}" >> "$T/kiln.yaml"; fi
WT=$("$KILN" token create --data "$T/d" --role worker | grep -oE 'kiln_[0-9a-f]{48}')
AT=$("$KILN" token create --data "$T/d" --role admin | grep -oE 'kiln_[0-9a-f]{48}')
RT=$("$KILN" token create --data "$T/d" --role read | grep -oE 'kiln_[0-9a-f]{48}')
start_serve "$T/d" --config "$T/kiln.yaml" --allow-anonymous-read || fail "serve did not start"
B=http://127.0.0.1:$PORT
mkdir -p "$T/bin"; cp "$KILN" "$T/bin/kiln"
"$T/bin/kiln" worker --server "$B" --token "$WT" --work-dir "$T/wd" --name w1 --cores 2 \
    --ram 4G >"$T/worker.log" 2>&1 &
WPID=$!
for _ in $(seq 100); do curl -fs "$U/repos" | grep -q "$(git rev-parse HEAD)" && break; sleep 0.1; done
curl -fs "$U/repos" | grep -q "$(git rev-parse HEAD)" || fail "the watcher never saw the first commit"

# The poller: every snapshot of the catalog, per commit, how many of the
# three variants it shows; any count but 0 or 3 is a partial release.
cat > "$T/poll.py" <<'PY'
import json, sys, time, urllib.request, collections
url, out = sys.argv[1], sys.argv[2]
n = 0; bad = []
seen = collections.Counter()
while True:
    try:
        d = json.load(urllib.request.urlopen(url + "/api/v1/catalog?limit=10000", timeout=10))
    except Exception as e:
        time.sleep(0.01); continue
    entries = d.get("entries") or d.get("artifacts") or []
    per = collections.Counter(e.get("commit") for e in entries if str(e.get("name", "")).startswith("rel-"))
    n += 1
    for c, k in per.items():
        seen[(c, k)] += 1
        if k not in (0, 3): bad.append((c, k))
    with open(out + ".tmp", "w") as f:
        json.dump({"polls": n, "bad": bad[:20], "seen": [[c, k, v] for (c, k), v in seen.items()]}, f)
    import os; os.replace(out + ".tmp", out)
    time.sleep(0.005)  # leave the cores to the farm
PY
python3 "$T/poll.py" "$B" "$T/poll.json" &
POLLPID=$!

push() { # message -> prints the new commit
    echo "$1 $RANDOM" > pkgs/stamp
    git commit -qam "$1"; git push -q "$T/origin.git" main; git rev-parse HEAD
}
jobs_of() { # commit -> "id:name:state ..." (all three once they exist)
    curl -fs "$U/jobs?limit=100" | python3 -c "
import json,sys
js=[j for j in json.load(sys.stdin)['jobs'] if j.get('commit')=='$1']
print(' '.join('%d:%s:%s' % (j['id'], j['name'], j['state']) for j in sorted(js, key=lambda j: j['name'])))"
}
wait_final() { # commit count -> waits until count jobs of it are final
    local s=""
    for _ in $(seq 1200); do
        s=$(jobs_of "$1")
        local n=0 f=0
        for x in $s; do n=$((n + 1)); case ${x##*:} in succeeded|failed|cancelled|superseded) f=$((f + 1));; esac; done
        [ "$n" = "$2" ] && [ "$f" = "$2" ] && { echo "$s"; return 0; }
        sleep 0.1
    done
    fail "jobs of ${1:0:12} did not all finish: $s"
}
visible() { # commit -> how many rel-* entries of it the catalog shows
    curl -fs "$U/catalog?limit=10000" | python3 -c "
import json,sys
d=json.load(sys.stdin); e=d.get('entries') or d.get('artifacts') or []
print(sum(1 for x in e if x.get('commit')=='$1' and x.get('name','').startswith('rel-')))"
}
release_of() { # commit -> the release object (JSON) from the list
    curl -fs "$U/releases?commit=$1" | python3 -c "
import json,sys
r=json.load(sys.stdin)['releases']; print(json.dumps(r[0]) if r else '')"
}
jget() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2]))" "$1" "$2"; }

# --- 1. one variant fails: nothing of the commit is visible -------------
touch "$T/fail-b"
C1=$(push "first release")
s=$(wait_final "$C1" 3)
echo "$s" | grep -q ":rel-a:succeeded" && echo "$s" | grep -q ":rel-b:failed" &&
    echo "$s" | grep -q ":rel-c:succeeded" || fail "expected a, c succeeded and b failed: $s"
[ "$(visible "$C1")" = 0 ] || fail "a held release shows entries: $(visible "$C1") of ${C1:0:12} visible"
R1=$(release_of "$C1")
[ -n "$R1" ] || fail "no release for ${C1:0:12}: $(curl -fs "$U/releases")"
[ "$(jget "$R1" 'd["status"]')" = held ] || fail "release 1 should be held: $R1"
[ "$(jget "$R1" '[h["name"] for h in d["held_by"]]')" = "['rel-b']" ] || fail "held_by: $R1"
jget "$R1" 'd["held_by"][0]["reason"] or ""' | grep -q "exit\|status 3\|exited" ||
    fail "the holder's reason does not say why: $R1"
RID1=$(jget "$R1" 'd["id"]')
# the held entries exist (a and c passed) but are hidden, narinfo included
full=$(curl -fs "$U/releases/$RID1")
[ "$(jget "$full" 'len(d["entries"])')" = 2 ] || fail "release 1 should hold 2 entries: $full"
sp=$(jget "$full" 'd["entries"][0]["store_path"]')
hp=$(basename "$sp" | cut -c1-32)
# The build's worker staged it (test hosts substitute it from /nix-cache):
# a worker's own credential and an admin get its narinfo and NAR; anyone
# else gets 404 for both (anonymous, a read token) or 403 (a registration
# token).
r=$(curl -s -X POST -H "Authorization: Bearer $WT" -d '{"name":"peek","cores":1,"ram_mb":1,"platform":"x86_64-linux"}' "$U/workers/register")
CW=$(jget "$r" 'd["credential"]') || fail "register a worker to peek: $r"
cache_get() { # TOKEN FILE -> HTTP status (no token: anonymous)
    curl -s -o "$T/cache.out" -w '%{http_code}' ${1:+-H "Authorization: Bearer $1"} "$B/nix-cache/$2"
}
c1=$(cache_get "$CW" "$hp.narinfo"); [ "$c1" = 200 ] || fail "a worker credential cannot fetch a staged narinfo of a held release ($c1: $(cat "$T/cache.out"))"
nar=$(sed -n 's/^URL: //p' "$T/cache.out")
[ "$(cache_get "$CW" "$nar")" = 200 ] || fail "a worker credential cannot fetch the staged NAR $nar"
[ "$(cache_get "$AT" "$hp.narinfo")" = 200 ] || fail "an admin cannot fetch a staged narinfo"
for who in "" "$RT" "$WT"; do
    c1=$(cache_get "$who" "$hp.narinfo") c2=$(cache_get "$who" "$nar")
    # 404 (it does not exist for a reader), or 403 (a registration token
    # may only register)
    case "$c1 $c2" in "404 404" | "403 403") ;; *) false ;; esac ||
        fail "a held release's staged path is served to ${who:-anonymous} (narinfo $c1, NAR $c2)"
done
out=$("$KILN" release ls --server "$B") || fail "kiln release ls failed"
echo "$out" | grep -E "^$RID1 +held .*rel-b failed" >/dev/null || fail "kiln release ls does not say rel-b holds it: $out"
out=$("$KILN" release show "$RID1" --server "$B") || fail "kiln release show failed"
echo "$out" | grep -q "held by:" && echo "$out" | grep -q "rel-b failed at build" ||
    fail "kiln release show does not say rel-b holds it: $out"
echo "ok: variant b failed: release $RID1 held by rel-b, nothing of ${C1:0:12} visible in the catalog"

# --- 2. the retry passes: all appear at once -----------------------------
rm -f "$T/fail-b"
JB=$(echo "$s" | tr ' ' '\n' | grep ":rel-b:" | cut -d: -f1)
"$KILN" retry "$JB" --server "$B" --token "$AT" >/dev/null || fail "kiln retry $JB"
for _ in $(seq 600); do [ "$(jget "$(release_of "$C1")" 'd["status"]')" = complete ] && break; sleep 0.1; done
R1=$(release_of "$C1")
[ "$(jget "$R1" 'd["status"]')" = complete ] || fail "release 1 did not complete after the retry: $R1"
[ "$(visible "$C1")" = 3 ] || fail "after completion $(visible "$C1") of 3 visible"
for who in "" "$RT"; do
    code=$(cache_get "$who" "$hp.narinfo")
    [ "$code" = 200 ] || fail "the narinfo of a published entry is not served to ${who:-anonymous} ($code)"
    code=$(cache_get "$who" "$nar")
    [ "$code" = 200 ] || fail "the NAR of a published entry is not served to ${who:-anonymous} ($code)"
done
echo "ok: the retry of rel-b passed: release $RID1 complete, all 3 variants of ${C1:0:12} visible"

# --- 3. a newer push supersedes an unfinished release --------------------
touch "$T/fail-a"
C2=$(push "second")
s=$(wait_final "$C2" 3)
R2=$(release_of "$C2")
[ "$(jget "$R2" 'd["status"]')" = held ] || fail "release 2 should be held by rel-a: $R2"
rm -f "$T/fail-a"
C3=$(push "third")
s3=$(wait_final "$C3" 3)
for _ in $(seq 600); do [ "$(jget "$(release_of "$C3")" 'd["status"]')" = complete ] && break; sleep 0.1; done
R2=$(release_of "$C2"); R3=$(release_of "$C3")
[ "$(jget "$R2" 'd["status"]')" = superseded ] || fail "release 2 not superseded: $R2"
[ "$(jget "$R2" 'd["superseded_by"]')" = "$(jget "$R3" 'd["id"]')" ] || fail "superseded_by: $R2 / $R3"
[ "$(jget "$R3" 'd["status"]')" = complete ] || fail "release 3 did not complete: $R3 ($s3)"
[ "$(visible "$C2")" = 0 ] || fail "the superseded release shows $(visible "$C2") entries"
[ "$(visible "$C3")" = 3 ] || fail "release 3 shows $(visible "$C3") of 3"
# a retry of the superseded commit's failed variant never shows it
JA=$(echo "$s" | tr ' ' '\n' | grep ":rel-a:" | cut -d: -f1)
"$KILN" retry "$JA" --server "$B" --token "$AT" >/dev/null || fail "kiln retry $JA"
for _ in $(seq 600); do jobs_of "$C2" | grep -q ":rel-a:succeeded" && break; sleep 0.1; done
jobs_of "$C2" | grep -q ":rel-a:succeeded" || fail "the retry of $JA did not pass: $(jobs_of "$C2")"
[ "$(visible "$C2")" = 0 ] || fail "a superseded release became visible after a retry"
echo "ok: push ${C3:0:12} superseded release $(jget "$R2" 'd["id"]') (${C2:0:12}); it never showed, even after a retry"

# --- the poller never saw a partial release ------------------------------
sleep 0.5
stop_pid "$POLLPID"; POLLPID=""
p=$(cat "$T/poll.json")
[ "$(jget "$p" 'd["bad"]')" = "[]" ] || fail "the poller saw partial releases: $p"
polls=$(jget "$p" 'd["polls"]')
[ "$polls" -ge 20 ] || fail "the poller read the catalog only $polls times"
jget "$p" '[(c[:12], k) for c, k, v in d["seen"]]' | grep -q "'${C1:0:12}', 3" || fail "the poller never saw release 1: $p"
echo "ok: a poller read the catalog $polls times while releases were held and completed: never a partial release"

"$KILN" catalog verify --data "$T/d" >"$T/verify.log" 2>&1 || fail "catalog verify: $(cat "$T/verify.log")"
echo "ok: kiln catalog verify is clean"
echo PASS
