#!/bin/sh
# check.sh WHAT RESULT SM - the demo recipe's selftest checks, one script for
# its GPU variants (SM 75..120) and its CPU-only ones (sm=cpu), since a
# recipe's checks are one list for every variant.
#   built-for: GPU: the cubin's ELF header names exactly sm_SM (no GPU
#              needed); CPU: the output holds bin/demo-cpu and no cubin.
#   runs:      GPU: kernels-selftest's smoke kernels on the matching GPU;
#              CPU: bin/demo-cpu, which checks its own results.
set -eu
what=$1 out=$2 sm=$3
here=$(dirname "$0")
case "$what:$sm" in
built-for:cpu)
    [ -x "$out/bin/demo-cpu" ] || { echo "$out/bin/demo-cpu missing" >&2; exit 1; }
    [ ! -e "$out/cubin" ] || { echo "$out has CUDA cubins but is a CPU-only variant" >&2; exit 1; }
    ;;
built-for:*)
    sh "$here/cubin-sm.sh" "$out/cubin/demo.sm_$sm.cubin" | grep -q " $sm\$"
    ;;
runs:cpu) "$out/bin/demo-cpu" ;;
runs:*) "$out/bin/kiln-selftest" --json ;;
*) echo "check.sh: unknown check '$what'" >&2; exit 2 ;;
esac
