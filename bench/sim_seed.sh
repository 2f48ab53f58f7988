#!/usr/bin/env bash
# bench/sim_seed.sh - kiln sim over the seed: 98 vLLM variants + the custom
# PyTorch builds they depend on, on bench/farms/seed-farm.yaml. kiln sim runs
# the service's own placer the way the service feeds it (scheduler/trace.h
# events, one job per worker per pass; `kiln sim --replay` checks a service
# trace against it). Prints the service's default policy (kiln order,
# host_policy spread) beside the FIFO first-fit and the Slurm-like EASY
# backfill baselines (same run), then the
# pack host policy, the ratio to the lower bound, and "what if I add one
# build host". Also runs the variant where
# dependents wait only for the dependency's build, a 256 GiB-per-host
# farm where RAM, not cores, is the bottleneck, and a few-GPU farm (one
# GPU per test host model instead of two), with and without backfill.
#   bash bench/sim_seed.sh            (uses build/kiln, or $KILN_BIN)
set -eu
cd "$(dirname "$0")/.."
KILN=${KILN_BIN:-build/kiln}
[ -x "$KILN" ] || make --no-print-directory -j2 >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run() {
    echo "\$ kiln sim $*"
    "$KILN" sim "$@"
    echo
}
run --farm bench/farms/seed-farm.yaml recipes/vllm.yaml --deps recipes/pytorch.yaml \
    --host-policy spread --add build --svg "${SVG:-$tmp/seed.svg}"
run --farm bench/farms/seed-farm.yaml recipes/vllm.yaml --deps recipes/pytorch.yaml \
    --host-policy pack | sed -n "1,7p"
run --farm bench/farms/seed-farm.yaml recipes/vllm.yaml --deps recipes/pytorch.yaml \
    --deps-build-only | sed -n "1,7p"
sed 's/ram: 512GiB/ram: 256GiB/' bench/farms/seed-farm.yaml >"$tmp/seed-256g.yaml"
run --farm "$tmp/seed-256g.yaml" recipes/vllm.yaml --deps recipes/pytorch.yaml | sed -n '1,7p'
run --farm "$tmp/seed-256g.yaml" recipes/vllm.yaml --deps recipes/pytorch.yaml \
    --deps-build-only | sed -n "1,7p"
# Few GPUs: every GPU test host keeps one GPU per model instead of two.
sed 's/count: 2}/count: 1}/' bench/farms/seed-farm.yaml >"$tmp/seed-1gpu.yaml"
run --farm "$tmp/seed-1gpu.yaml" recipes/vllm.yaml --deps recipes/pytorch.yaml | sed -n '1,7p'
run --farm "$tmp/seed-1gpu.yaml" recipes/vllm.yaml --deps recipes/pytorch.yaml \
    --no-backfill | sed -n '1,7p'
