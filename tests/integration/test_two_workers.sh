#!/usr/bin/env bash
# Foundation acceptance: kiln serve and two real workers on loopback run 20
# jobs; one is a real nix-build whose builder fails unless NIX_BUILD_CORES
# equals the job's cores. All succeed, both workers take work, every log is
# retrievable with its output, and the states are in SQLite.
#
# The placement property (issue 14), checked without timing luck: while both
# workers hold an open lease request (long waits, counted on /metrics), a
# held job runs on one of them; a second held job must then go to the other,
# idle worker (default host policy spread), not queue behind or pile onto the
# busy one. Held jobs wait for a file the test writes once both run.
set -u
KILN=${KILN_BIN:?}
command -v nix-build >/dev/null || { echo "SKIP nix-build not installed"; exit 77; }
command -v sqlite3 >/dev/null || { echo "SKIP sqlite3 CLI not installed"; exit 77; }
T=$(mktemp -d /tmp/kiln-two-XXXXXX)
pids=()
. "$(dirname "$0")/lib_stop.sh"
cleanup() { for ((i = ${#pids[@]} - 1; i >= 0; i--)); do stop_pid "${pids[i]}"; done; rm -rf "$T"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; tail -20 "$T/serve.log"; exit 1; }
cat > "$T/probe.nix" <<'N'
{ want, nonce }:
builtins.derivation {
  name = "kiln-cores-check";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  inherit want nonce;
  args = [ "-c" "echo \"builder sees NIX_BUILD_CORES=$NIX_BUILD_CORES\"; test \"$NIX_BUILD_CORES\" = \"$want\" || { echo \"NIX_BUILD_CORES is $NIX_BUILD_CORES, the job has $want cores\"; exit 1; }; echo ok > $out" ];
}
N
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
U=http://127.0.0.1:$PORT/api/v1
ADMIN=$("$KILN" token create --data "$T/d" --role admin | grep -oE 'kiln_[0-9a-f]{48}')
WT=$("$KILN" token create --data "$T/d" --role worker | grep -oE 'kiln_[0-9a-f]{48}')
# Lease requests stay open far longer than this test runs, so "waiting" on
# /metrics means "waiting for the whole phase", whatever the machine's load.
printf 'max_lease_wait_s: 600\n' >"$T/serve.yaml"
printf 'lease_wait_s: 300\n' >"$T/worker.yaml"
"$KILN" serve --config "$T/serve.yaml" --listen 127.0.0.1:$PORT --data "$T/d" >"$T/serve.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.05; done
for w in 1 2; do
    "$KILN" worker --server "http://127.0.0.1:$PORT" --token "$WT" --name "w$w" --cores 4 --ram 2G \
        --config "$T/worker.yaml" --work-dir "$T/w$w" >"$T/w$w.log" 2>&1 &
    pids+=($!)
done
export KILN_SERVER=http://127.0.0.1:$PORT KILN_TOKEN=$ADMIN
waiting() { curl -fs -H "Authorization: Bearer $ADMIN" "http://127.0.0.1:$PORT/metrics" | sed -n 's/^kiln_lease_waiting //p'; }
# Bounded waits: a timeout means the property failed, not that we were slow.
for _ in $(seq 600); do [ "$(waiting)" = 2 ] && break; sleep 0.1; done
[ "$(waiting)" = 2 ] || fail "both workers should be asking for work, /metrics says $(waiting)"
submit_held() {
    "$KILN" submit --json --name "$1" --cores 1 --ram 256M -- \
        "while [ ! -e $T/release ]; do sleep 0.05; done; echo released-$1" \
        | python3 -c 'import json,sys;print(json.load(sys.stdin)["jobs"][0]["id"])'
}
worker_of() {
    for _ in $(seq 600); do
        r=$(sqlite3 "$T/d/kiln.db" "SELECT worker_id FROM jobs WHERE id=$1 AND state='building'")
        [ -n "$r" ] && { echo "$r"; return; }
        sleep 0.1
    done
    echo none
}
h1=$(submit_held held-1)
w_h1=$(worker_of "$h1")
[ "$w_h1" != none ] || fail "held-1 never ran although two workers were idle"
h2=$(submit_held held-2)
w_h2=$(worker_of "$h2")
[ "$w_h2" != none ] || fail "held-2 never ran although worker(s) were idle"
[ "$w_h2" != "$w_h1" ] || fail "held-2 went to busy worker $w_h1 while the other worker was idle and asking"
echo "ok: held jobs run on both workers ($w_h1, $w_h2): the idle worker got the queued job"
touch "$T/release"
ids=()
for i in $(seq 19); do
    ids+=($("$KILN" submit --json --name "job-$i" --cores 1 --ram 256M -- "echo output-of-$i; sleep 0.$((i % 5))" | python3 -c 'import json,sys;print(json.load(sys.stdin)["jobs"][0]["id"])'))
done
nix=$("$KILN" submit --json --name nix-cores-3 --cores 3 --ram 512M -- \
    "nix-build --option substituters '' --option sandbox false $T/probe.nix --argstr want 3 --argstr nonce \$(date +%s%N) --no-out-link" \
    | python3 -c 'import json,sys;print(json.load(sys.stdin)["jobs"][0]["id"])')
ids+=("$nix")
[ ${#ids[@]} -eq 20 ] || fail "submitted ${#ids[@]} jobs"
ids+=("$h1" "$h2")
done_n() { sqlite3 "$T/d/kiln.db" "SELECT count(*) FROM jobs WHERE state IN ('succeeded','failed','cancelled')"; }
for _ in $(seq 600); do [ "$(done_n)" -ge 22 ] && break; sleep 0.1; done
st=$(sqlite3 "$T/d/kiln.db" "SELECT state, count(*) FROM jobs GROUP BY state")
[ "$st" = "succeeded|22" ] || { "$KILN" logs "$nix"; fail "states in SQLite: $st"; }
echo "ok: 22 jobs succeeded (SQLite: $st)"
workers=$(sqlite3 "$T/d/kiln.db" "SELECT count(DISTINCT worker_id) FROM jobs")
[ "$workers" = 2 ] || fail "only $workers worker(s) ran jobs"
echo "ok: both workers ran jobs"
for i in $(seq 19); do
    "$KILN" logs "${ids[$((i - 1))]}" | grep -q "^output-of-$i$" || fail "log of job-$i lacks its output"
done
"$KILN" logs "$nix" | grep -q "builder sees NIX_BUILD_CORES=3" || fail "nix job log: $("$KILN" logs "$nix" | tail -5)"
echo "ok: every log retrievable; the nix-build's builder saw NIX_BUILD_CORES=3 = the job's cores"
echo PASS
