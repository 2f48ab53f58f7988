#!/usr/bin/env bash
# Foundation acceptance: kiln serve and two real workers on loopback run 20
# jobs; one is a real nix-build whose builder fails unless NIX_BUILD_CORES
# equals the job's cores. All succeed, both workers take work, every log is
# retrievable with its output, and the states are in SQLite.
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
"$KILN" serve --listen 127.0.0.1:$PORT --data "$T/d" >"$T/serve.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.05; done
for w in 1 2; do
    "$KILN" worker --server "http://127.0.0.1:$PORT" --token "$WT" --name "w$w" --cores 4 --ram 2G \
        --work-dir "$T/w$w" >"$T/w$w.log" 2>&1 &
    pids+=($!)
done
export KILN_SERVER=http://127.0.0.1:$PORT KILN_TOKEN=$ADMIN
ids=()
for i in $(seq 19); do
    ids+=($("$KILN" submit --json --name "job-$i" --cores 1 --ram 256M -- "echo output-of-$i; sleep 0.$((i % 5))" | python3 -c 'import json,sys;print(json.load(sys.stdin)["jobs"][0]["id"])'))
done
nix=$("$KILN" submit --json --name nix-cores-3 --cores 3 --ram 512M -- \
    "nix-build --option substituters '' --option sandbox false $T/probe.nix --argstr want 3 --argstr nonce \$(date +%s%N) --no-out-link" \
    | python3 -c 'import json,sys;print(json.load(sys.stdin)["jobs"][0]["id"])')
ids+=("$nix")
[ ${#ids[@]} -eq 20 ] || fail "submitted ${#ids[@]} jobs"
done_n() { sqlite3 "$T/d/kiln.db" "SELECT count(*) FROM jobs WHERE state IN ('succeeded','failed','cancelled')"; }
for _ in $(seq 600); do [ "$(done_n)" -ge 20 ] && break; sleep 0.1; done
st=$(sqlite3 "$T/d/kiln.db" "SELECT state, count(*) FROM jobs GROUP BY state")
[ "$st" = "succeeded|20" ] || { "$KILN" logs "$nix"; fail "states in SQLite: $st"; }
echo "ok: 20 jobs succeeded (SQLite: $st)"
workers=$(sqlite3 "$T/d/kiln.db" "SELECT count(DISTINCT worker_id) FROM jobs")
[ "$workers" = 2 ] || fail "only $workers worker(s) ran jobs"
echo "ok: both workers ran jobs"
for i in $(seq 19); do
    "$KILN" logs "${ids[$((i - 1))]}" | grep -q "^output-of-$i$" || fail "log of job-$i lacks its output"
done
"$KILN" logs "$nix" | grep -q "builder sees NIX_BUILD_CORES=3" || fail "nix job log: $("$KILN" logs "$nix" | tail -5)"
echo "ok: every log retrievable; the nix-build's builder saw NIX_BUILD_CORES=3 = the job's cores"
echo PASS
