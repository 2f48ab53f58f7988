#!/usr/bin/env bash
# A worker keeps the newest `keep_job_dirs` finished jobs' directories that
# jobs left files in, and removes the older ones (workers/retain.h): with
# keep_job_dirs: 2 and five jobs that each leave a file, two directories
# stay, and they are the two jobs reported last. Empty ones go to the spare
# pool as before.
set -u
. "$KILN_SRC/tests/integration/lib_serve.sh"
command -v curl >/dev/null || { echo "SKIP: curl not installed"; exit 77; }
fixture retain
start_serve "$D" --allow-anonymous-read || fail "serve did not start"
printf 'keep_job_dirs: 2\n' >"$T/worker.yaml"
start_worker ret-w --config "$T/worker.yaml" --cores 1
ids=""
for i in 1 2 3 4 5; do
    id=$(req "$SUB" POST /jobs "{\"name\":\"leave-$i\",\"command\":\"touch made-$i\"}" | cut -d' ' -f2- | jfield id)
    [ -n "$id" ] || fail "submit $i"
    ids="$ids $id"
done
last=$id
for _ in $(seq 1 300); do
    [ "$(req "" GET "/jobs/$last" | cut -d' ' -f2- | jfield state)" = succeeded ] && break
    sleep 0.1
done
[ "$(req "" GET "/jobs/$last" | cut -d' ' -f2- | jfield state)" = succeeded ] ||
    fail "job $last did not succeed; worker log: $(tail -5 "$T/worker.log")"
# The newest two by finish time: one core, so in order of submission.
want=$(for id in $ids; do echo "$id-1"; done | tail -2 | sort | tr '\n' ' ')
left() { ls "$T/work/jobs" | sort | tr '\n' ' '; }
for _ in $(seq 1 100); do [ "$(left)" = "$want" ] && break; sleep 0.1; done
[ "$(left)" = "$want" ] || fail "job dirs left: '$(left)', wanted '$want'"
for d in $want; do
    ls "$T/work/jobs/$d" | grep -q '^made-' || fail "$d lost its file"
done
echo PASS
