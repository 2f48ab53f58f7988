#!/usr/bin/env bash
# kiln sim end to end: the seed's 98 vLLM variants + their PyTorch builds on
# bench/farms/seed-farm.yaml, beside the FIFO baseline; SVG and JSON outputs;
# "what if I add a host"; clear errors for bad input. No processes, no ports.
set -u
: "${KILN_BIN:?}" "${KILN_SRC:?}"
cd "$KILN_SRC" || exit 1
for f in recipes/vllm.yaml recipes/pytorch.yaml bench/farms/seed-farm.yaml; do
    [ -f "$f" ] || { echo "SKIP: $f is missing"; exit 77; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$KILN_BIN" sim --farm bench/farms/seed-farm.yaml recipes/vllm.yaml --deps recipes/pytorch.yaml \
    --svg "$tmp/g.svg" --add build >"$tmp/out.txt" 2>"$tmp/err.txt" || { cat "$tmp/err.txt"; fail "sim exited $?"; }
cat "$tmp/out.txt"
grep -q '^kiln sim: 150 variants (98 requested, 52 dependencies), 300 tasks on 19 hosts' "$tmp/out.txt" || fail "variant count"
kratio=$(awk '/^kiln +[0-9]/ {print $NF}' "$tmp/out.txt")
fratio=$(awk '/^fifo +[0-9]/ {print $6}' "$tmp/out.txt")
[ -n "$kratio" ] && [ -n "$fratio" ] || fail "no policy lines"
awk -v r="$kratio" 'BEGIN { exit !(r <= 1.10) }' || fail "kiln ratio $kratio > 1.10"
grep -q '^with 1 more host like build: makespan' "$tmp/out.txt" || fail "no --add line"
grep -q '<svg' "$tmp/g.svg" && grep -q 'build-1' "$tmp/g.svg" && grep -q 'gpu0 sm_103' "$tmp/g.svg" || fail "svg content"

"$KILN_BIN" sim --farm bench/farms/seed-farm.yaml recipes/vllm.yaml --deps recipes/pytorch.yaml \
    --json --policy fifo >"$tmp/out.json" || fail "json run"
python3 - "$tmp/out.json" <<'PY' || fail "json content"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["policy"] == "fifo" and d["comparison"]["policy"] == "kiln"
assert d["tasks_placed"] == 300 and d["tasks_unplaceable"] == 0
assert d["makespan_s"] >= d["lower_bound_s"] > 0
assert all(h["ram_peak_mb"] <= h["ram_mb"] for h in d["hosts"])
PY

# a farm that cannot test SM120: exit 1 and a reason per task
sed '/name: rtx5090/,/gpus:/d' bench/farms/seed-farm.yaml >"$tmp/no120.yaml"
"$KILN_BIN" sim --farm "$tmp/no120.yaml" recipes/vllm.yaml --where sm=120 >"$tmp/o" 2>"$tmp/e"
rc=$?
[ $rc -eq 1 ] || fail "expected exit 1 for unplaceable tests, got $rc"
grep -q 'no online worker with sm_120' "$tmp/e" || { cat "$tmp/e"; fail "reason"; }

# bad input: usage errors (exit 2) with a sentence
printf 'hosts:\n  - {name: a, cores: 4}\n' >"$tmp/bad.yaml"
"$KILN_BIN" sim --farm "$tmp/bad.yaml" recipes/vllm.yaml 2>"$tmp/e"; rc=$?
[ $rc -eq 2 ] && grep -q 'ram' "$tmp/e" || fail "bad farm: rc $rc $(cat "$tmp/e")"
echo '[{"name":"a","depends":["b"]},{"name":"b","depends":["a"]}]' >"$tmp/cyc.json"
"$KILN_BIN" sim --farm bench/farms/seed-farm.yaml --variants "$tmp/cyc.json" 2>"$tmp/e"; rc=$?
[ $rc -eq 2 ] && grep -q 'cycle' "$tmp/e" || fail "cycle: rc $rc $(cat "$tmp/e")"
"$KILN_BIN" sim recipes/vllm.yaml 2>/dev/null; [ $? -eq 2 ] || fail "missing --farm"
"$KILN_BIN" sim --farm bench/farms/seed-farm.yaml --policy lifo recipes/vllm.yaml 2>/dev/null; [ $? -eq 2 ] || fail "bad policy"
echo "PASS"
