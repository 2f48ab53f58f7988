#!/usr/bin/env bash
# kiln recipe expand|check|diff from the command line: outputs, exit codes
# (0 ok, 1 problems, 2 usage, 5 not found) and file:line:col error lines.
set -u
: "${KILN_BIN:?KILN_BIN not set}" "${KILN_SRC:?KILN_SRC not set}"
work=$(mktemp -d /tmp/kiln-recipe-cli.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$KILN_SRC" || exit 1
fail() { echo "FAIL: $*"; exit 1; }

# expand: table and JSON
out=$("$KILN_BIN" recipe expand recipes/vllm.yaml) || fail "expand vllm"
[ "$(echo "$out" | tail -1)" = "98 variants" ] || fail "table: $(echo "$out" | tail -1)"
echo "$out" | grep -q '^vllm-python312-cuda12_9-sm90-armv9 *aarch64-linux' || fail "armv9 row"
n=$("$KILN_BIN" recipe expand recipes/vllm.yaml --json | grep -c '^    "name": "vllm-python312-')
[ "$n" -eq 98 ] || fail "json has $n variants"
n=$("$KILN_BIN" recipe expand recipes/vllm.yaml --json --where 'sm=103' | grep -c '^    "name": ')
[ "$n" -eq 6 ] || fail "where sm=103 gives $n"
out=$("$KILN_BIN" recipe expand recipes/vllm.yaml --branch main --where sm=90,isa=avx512,cuda=12.9 --json)
echo "$out" | grep -q '"vllm_version": "0.15.1"' || fail "branch main"

# check: good recipes pass, bad ones list every problem as file:line:col
"$KILN_BIN" recipe check recipes/vllm.yaml recipes/pytorch.yaml recipes/demo.yaml >/dev/null ||
    fail "good recipes do not check clean"
"$KILN_BIN" recipe check tests/fixtures/recipes/bad-many.yaml 2>"$work/err"
rc=$?
[ $rc -eq 1 ] || fail "check bad-many exit $rc, want 1"
n=$(grep -cE '^tests/fixtures/recipes/bad-many.yaml:[0-9]+:[0-9]+: error: ' "$work/err")
[ "$n" -eq 4 ] || { cat "$work/err"; fail "bad-many: $n problems listed, want 4"; }
grep -q "13:3: error: unknown key 'comand' in templates; did you mean 'command'?" "$work/err" ||
    fail "did-you-mean line"
for f in tests/fixtures/recipes/bad-*.yaml; do
    "$KILN_BIN" recipe check "$f" 2>"$work/err" && fail "$f checked clean"
    grep -qE "^$f:[0-9]+:[0-9]+: error: [A-Za-z'\"{]" "$work/err" || { cat "$work/err"; fail "$f: no file:line:col line"; }
done

# expand stops at the first problem with the same line
"$KILN_BIN" recipe expand tests/fixtures/recipes/bad-dep-cycle.yaml 2>"$work/err" && fail "cycle expanded"
grep -q 'bad-dep-cycle.yaml:12:5: error: dependency cycle: demo-a -> demo-b -> demo-a' "$work/err" ||
    { cat "$work/err"; fail "cycle message"; }

# diff
cat >"$work/old.yaml" <<'Y'
recipe: d
axes: {sm: [75, 80, 86]}
env: {X: "1"}
templates: {name: "d-{sm}", command: "make"}
Y
cat >"$work/new.yaml" <<'Y'
recipe: d
axes: {sm: [80, 86, 90]}
env: {X: "1"}
rules: [{when: {sm: 86}, env: {X: "2"}}]
templates: {name: "d-{sm}", command: "make"}
Y
out=$("$KILN_BIN" recipe diff "$work/old.yaml" "$work/new.yaml") || fail "diff"
echo "$out" | grep -qx '+ d-90' || fail "diff added: $out"
echo "$out" | grep -qx -- '- d-75' || fail "diff removed: $out"
echo "$out" | grep -qx '~ d-86: env.X' || fail "diff changed: $out"
echo "$out" | tail -1 | grep -qx '1 added, 1 removed, 1 changed, 1 unchanged' || fail "diff summary: $out"
"$KILN_BIN" recipe diff "$work/old.yaml" "$work/new.yaml" --json | grep -q '"env.X"' || fail "diff --json"

# usage and missing files
"$KILN_BIN" recipe expand 2>/dev/null; [ $? -eq 2 ] || fail "usage exit"
"$KILN_BIN" recipe frobnicate 2>/dev/null; [ $? -eq 2 ] || fail "unknown subcommand exit"
"$KILN_BIN" recipe expand "$work/nope.yaml" 2>"$work/err"; rc=$?
[ $rc -eq 5 ] || fail "missing file exit $rc"
grep -q "nope.yaml:1:1: error: no such recipe file" "$work/err" || fail "missing file message"
echo "PASS"
