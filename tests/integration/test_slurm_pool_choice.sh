#!/usr/bin/env bash
# Per-job worker choice against a real Slurm: two Slurm pools ("it" and
# "other", both on partition kiln) serve one kiln. A job that names a
# worker (kiln submit --worker slurm-other, the API's "worker") runs only
# there (its Slurm job is kiln-other-...); a job that names none is placed
# as usual; one that names a worker nobody registered waits and says so.
set -u
export KILN_SRC=${KILN_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
: "${KILN_BIN:?}"
KILN=$KILN_BIN
. "$(dirname "$0")/lib_stop.sh"
. "$(dirname "$0")/lib_slurm.sh"
T=$(mktemp -d /tmp/kiln-slurm-pool-XXXXXX)
SERVE_PID=""
cleanup() { stop_pid "$SERVE_PID"; stop_slurm; [ -n "${KEEP:-}" ] || rm -rf "$T"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; tail -30 "$T/serve.log"; exit 1; }
start_slurm "$T/slurm"
rc=$?; [ $rc -eq 0 ] || exit $rc
start_serve_slurm "$T" "    - name: other
      partition: kiln
      kiln: $KILN_BIN
      worker_config: $T/step.yaml
      out_dir: $T/out
      poll_ms: 250" || fail "serve"
for _ in $(seq 100); do
    curl -fs -H "Authorization: Bearer $ADMIN" "$U/workers" | grep -q '"slurm-other"' && break
    sleep 0.1
done
curl -fs -H "Authorization: Bearer $ADMIN" "$U/workers" | grep -q '"slurm-other"' || fail "second pool did not register"
export KILN_SERVER=http://127.0.0.1:$PORT KILN_TOKEN=$ADMIN
jid() { "$PY" -c 'import json,sys;print(json.load(sys.stdin)["jobs"][0]["id"])'; }
jget() { curl -s -H "Authorization: Bearer $ADMIN" "$U/jobs/$1" | "$PY" -c "import json,sys;d=json.load(sys.stdin);print($2)"; }
wait_final() {
    for _ in $(seq 1 600); do
        case $(jget "$1" 'd["state"]') in succeeded|failed|cancelled) return 0;; esac
        sleep 0.1
    done
    fail "job $1 did not finish: $(jget "$1" 'd')"
}
ran_as() { squeue -h --states=all -o '%j' | grep -E "^kiln-[a-z]+-$1-[0-9]+$" | sed -E 's/^kiln-([a-z]+)-.*/\1/' | sort -u | tr '\n' ' '; }

# 1. named: three on "other", three on "it", regardless of where dispatch
# would have put them
o=(); i=()
for n in 1 2 3; do
    o+=("$("$KILN" submit --json --name to-other-$n --worker slurm-other --ram 100M -- 'sleep 1' | jid)")
    i+=("$("$KILN" submit --json --name to-it-$n --worker slurm-it --ram 100M -- 'sleep 1' | jid)")
done
free=$("$KILN" submit --json --name anywhere --ram 100M -- 'true' | jid)
for id in "${o[@]}" "${i[@]}" "$free"; do wait_final "$id"; done
for id in "${o[@]}"; do
    [ "$(jget "$id" 'd["state"], d["worker"]')" = "succeeded slurm-other" ] || fail "job $id: $(jget "$id" 'd["state"], d["worker"]')"
    [ "$(ran_as "$id")" = "other " ] || fail "job $id ran in Slurm as '$(ran_as "$id")'"
done
for id in "${i[@]}"; do
    [ "$(jget "$id" 'd["state"], d["worker"]')" = "succeeded slurm-it" ] || fail "job $id: $(jget "$id" 'd["state"], d["worker"]')"
    [ "$(ran_as "$id")" = "it " ] || fail "job $id ran in Slurm as '$(ran_as "$id")'"
done
[ "$(jget "$free" 'd["state"]')" = succeeded ] || fail "unnamed job: $(jget "$free" 'd')"
[ "$(jget "${o[0]}" 'd["resources"]["worker"]')" = slurm-other ] || fail "resources.worker: $(jget "${o[0]}" 'd["resources"]')"
"$KILN" show "${o[0]}" | grep -q '"worker":"slurm-other"' || fail "kiln show: $("$KILN" show "${o[0]}" | grep resources)"
echo "ok 1 --worker slurm-other: 3 jobs ran only as Slurm jobs of pool other; --worker slurm-it: 3 only in pool it; an unnamed job ran on $(jget "$free" 'd["worker"]')"

# 2. a worker nobody registered: it waits and says why
nope=$("$KILN" submit --json --name to-nowhere --worker slurm-nope --ram 100M -- 'true' | jid)
why=""
for _ in $(seq 100); do
    why=$(jget "$nope" 'd["wait_reason"] or ""')
    case $why in *"slurm-nope, which is not registered"*) break;; esac
    sleep 0.1
done
case $why in *"slurm-nope, which is not registered"*) ;; *) fail "wait_reason: '$why'";; esac
[ "$(jget "$nope" 'd["state"]')" = queued ] || fail "it did not wait: $(jget "$nope" 'd["state"]')"
"$KILN" cancel "$nope" >/dev/null || fail "cancel"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
    --data-binary '{"name":"x","command":"true","worker":"a b"}' "$U/jobs")
[ "$code" = 400 ] || fail "a worker name with a space: HTTP $code"
echo "ok 2 --worker slurm-nope waits: $why; a malformed name is refused (HTTP 400)"
echo PASS
