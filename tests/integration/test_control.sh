#!/usr/bin/env bash
# Job control with real processes: retry, per-job timeout (with retries and
# backoff as an infrastructure failure), supersede by a newer commit, and
# cancel of a queued job. (Cancel of a running job: test_e2e_worker.sh;
# supersede of a running build by a push: test_gitwatch.sh.)
set -u
KILN=${KILN_BIN:?}
T=$(mktemp -d /tmp/kiln-control-XXXXXX)
SERVE=""; W=""
. "$(dirname "$0")/lib_stop.sh"
cleanup() { stop_pid "$W"; stop_pid "$SERVE"; rm -rf "$T"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; tail -20 "$T/serve.log"; tail -20 "$T/w.log"; exit 1; }
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
U=http://127.0.0.1:$PORT/api/v1
ADMIN=$("$KILN" token create --data "$T/d" --role admin | grep -oE 'kiln_[0-9a-f]{48}')
WT=$("$KILN" token create --data "$T/d" --role worker | grep -oE 'kiln_[0-9a-f]{48}')
cat > "$T/k.yaml" <<Y
retry_backoff_s: 0.5
retry_backoff_max_s: 1
Y
"$KILN" serve --listen 127.0.0.1:$PORT --data "$T/d" --config "$T/k.yaml" >"$T/serve.log" 2>&1 &
SERVE=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.05; done
"$KILN" worker --server "http://127.0.0.1:$PORT" --token "$WT" --name w --cores 2 --ram 4G --work-dir "$T/w" >"$T/w.log" 2>&1 &
W=$!
H=(-H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json')
submit() { curl -fs "${H[@]}" --data "$1" "$U/jobs" | python3 -c 'import json,sys;print(json.load(sys.stdin)["jobs"][0]["id"])'; }
field() { curl -fs "${H[@]}" "$U/jobs/$1" | python3 -c "import json,sys;j=json.load(sys.stdin);print(j.get('$2'))"; }
wait_state() { # id state seconds
    for _ in $(seq $(( $3 * 10 ))); do [ "$(field "$1" state)" = "$2" ] && return 0; sleep 0.1; done
    fail "job $1: wanted $2, is $(field "$1" state) ($(field "$1" reason); waits: $(field "$1" wait_reason))"
}

# retry: fails the first time (no marker), succeeds when retried
id=$(submit "{\"name\":\"flaky\",\"command\":\"test -f $T/marker || { touch $T/marker; exit 3; }\"}")
wait_state "$id" failed 20
[ "$(field "$id" exit_code)" = 3 ] || fail "exit code not recorded: $(field "$id" exit_code)"
a1=$(field "$id" attempt)
curl -fs "${H[@]}" -X POST --data '{}' "$U/jobs/$id/retry" >/dev/null || fail "retry refused"
wait_state "$id" succeeded 20
[ "$(field "$id" attempt)" -gt "$a1" ] || fail "retry did not start a new attempt"
echo "ok: a failed build is not retried by itself; retry reruns it and it succeeds"

# timeout: killed at its timeout, retried with backoff (infrastructure), then failed
t0=$(date +%s)
id=$(submit "{\"name\":\"hang\",\"command\":\"echo \$\$ >> $T/hang.pids; sleep 60\",\"timeout_s\":1,\"max_attempts\":2}")
wait_state "$id" failed 40
r=$(field "$id" reason)
echo "$r" | grep -qi "time" || fail "timeout reason should say so: $r"
n=$(wc -l < "$T/hang.pids")
[ "$n" -eq 2 ] || fail "expected 2 attempts, saw $n"
for p in $(cat "$T/hang.pids"); do kill -0 "$p" 2>/dev/null && fail "timed-out process $p still runs"; done
echo "ok: timeout kills the process group, retries once with backoff, then fails: '$r' ($(( $(date +%s) - t0 )) s)"

# supersede: a newer commit of the same branch and variant replaces a queued one
kill -STOP "$W"   # keep both queued
a=$(submit '{"name":"variant-x","command":"true","branch":"main","commit":"aaaa","attrs":{}}' )
b=$(curl -fs "${H[@]}" --data '{"recipe_yaml":"recipe: sx\ndefault_branch: main\naxes:\n  v: [x]\nbranches: {main: {}}\ntemplates:\n  name: \"variant-{v}\"\n  command: \"true\"\n","branch":"main","commit":"bbbb"}' "$U/jobs" | python3 -c 'import json,sys;print(json.load(sys.stdin)["jobs"][0]["id"])')
kill -CONT "$W"
wait_state "$a" superseded 5
echo "$(field "$a" reason)" | grep -q "superseded by job $b" || fail "reason: $(field "$a" reason)"
wait_state "$b" succeeded 20
echo "ok: a newer commit supersedes the queued build of the same variant and branch"

# cancel a queued job that waits for a dependency
kill -STOP "$W"
p=$(submit '{"name":"parent","command":"sleep 1"}')
c=$(submit "{\"name\":\"child\",\"command\":\"true\",\"depends\":[$p]}")
curl -fs "${H[@]}" -X POST --data '{}' "$U/jobs/$p/cancel" >/dev/null
kill -CONT "$W"
wait_state "$p" cancelled 5
wait_state "$c" failed 5
echo "$(field "$c" reason)" | grep -q "parent" || fail "dependent's reason should name its dependency: $(field "$c" reason)"
echo "ok: cancelling a job fails its dependents with a reason naming it"
echo PASS
