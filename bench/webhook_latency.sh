#!/usr/bin/env bash
# Webhook-to-enqueued latency for the 98-variant vLLM recipe.
# A real bare repository holds recipes/vllm.yaml and pytorch.yaml; each
# round pushes a change to a shared lib file (all 98 variants affected),
# sends a signed GitHub webhook and measures until the jobs of that commit
# are visible through the API. Baseline, same run: submitting one ad-hoc job
# through the API until it is visible (the cost of the HTTP + store path
# alone). Prints median/p90 and the ratio. Usage: bench/webhook_latency.sh [ROUNDS]
set -eu
ROUNDS=${1:-10}
KILN=${KILN_BIN:-$(cd "$(dirname "$0")/.." && pwd)/build/kiln}
SRC=$(cd "$(dirname "$0")/.." && pwd)
T=$(mktemp -d /tmp/kiln-bench-hook-XXXXXX)
pid=""
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; wait 2>/dev/null; rm -rf "$T"' EXIT
git init -q --bare "$T/o.git"
git init -q -b vllm-0.14.0 "$T/w"
cd "$T/w"
git config user.email b@b; git config user.name b
mkdir -p recipes .flox/pkgs/lib
cp "$SRC/recipes/vllm.yaml" "$SRC/recipes/pytorch.yaml" recipes/
echo 0 > .flox/pkgs/lib/custom-torch.nix
git add -A; git commit -qm init; git push -q ../o.git vllm-0.14.0
P=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
cat > "$T/k.yaml" <<Y
repos:
  - {name: vllm, url: $T/o.git, recipes: [recipes/vllm.yaml], branches: "vllm-*", poll_s: 0, initial_build: false}
hooks: {secret: s}
Y
TOK=$("$KILN" token create --data "$T/d" --role admin | grep -oE 'kiln_[0-9a-f]{48}')
"$KILN" serve --listen 127.0.0.1:$P --data "$T/d" --config "$T/k.yaml" --allow-anonymous-read >"$T/serve.log" 2>&1 &
pid=$!
U=http://127.0.0.1:$P
for _ in $(seq 100); do curl -fs "$U/api/v1/repos" | grep -q "$(git rev-parse HEAD)" && break; sleep 0.1; done
now_ms() { date +%s%3N; }
# The 98 jobs of a push are committed in one transaction, so the newest job
# carrying the commit means all of them are visible; polling limit=1 keeps
# the measuring cheap.
newest_has() { curl -fs "$U/api/v1/jobs?limit=1" | grep -q "\"commit\":\"$1\""; }
hook=() base=()
for r in $(seq "$ROUNDS"); do
    echo "$r" > .flox/pkgs/lib/custom-torch.nix
    git commit -qam "round $r"; git push -q ../o.git vllm-0.14.0
    c=$(git rev-parse HEAD)
    body="{\"ref\":\"refs/heads/vllm-0.14.0\",\"after\":\"$c\",\"repository\":{\"clone_url\":\"$T/o.git\"}}"
    sig="sha256=$(printf '%s' "$body" | openssl dgst -sha256 -hmac s | sed 's/^.*= //')"
    t0=$(now_ms)
    curl -fs -o /dev/null -X POST -H 'X-GitHub-Event: push' -H "X-GitHub-Delivery: r$r" \
        -H "X-Hub-Signature-256: $sig" --data "$body" "$U/api/v1/hooks/github"
    until newest_has "$c"; do sleep 0.002; done
    hook+=($(( $(now_ms) - t0 )))
    n=$(curl -fs "$U/api/v1/jobs?limit=1000" | grep -o "\"commit\":\"$c\"" | wc -l)
    [ "$n" -eq 98 ] || { echo "round $r: $n jobs for the commit, expected 98" >&2; exit 1; }
    t0=$(now_ms)
    id=$(curl -fs -H "Authorization: Bearer $TOK" -H 'Content-Type: application/json' \
        --data '{"name":"noop","command":"true"}' "$U/api/v1/jobs" | grep -o '"id":[0-9]*' | head -1 | cut -d: -f2)
    until curl -fs "$U/api/v1/jobs/$id" >/dev/null; do sleep 0.002; done
    base+=($(( $(now_ms) - t0 )))
done
stats() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {printf "median %d ms, p90 %d ms", a[int((NR+1)/2)], a[int(NR*0.9+0.5)]}'; }
med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "webhook -> 98 jobs enqueued: $(stats "${hook[@]}")  (rounds: ${hook[*]})"
echo "baseline submit -> visible:  $(stats "${base[@]}")"
hb=$(med "${base[@]}"); [ "$hb" -gt 0 ] || hb=1
echo "ratio webhook/baseline: $(awk -v a="$(med "${hook[@]}")" -v b="$hb" 'BEGIN{printf "%.1f", a/b}')  (target: webhook under 200 ms)"
