# Sourced by the multi-host farm tests (test_three_hosts.sh,
# test_staging_faults.sh, test_large_output.sh): a server, a build host, a
# GPU-test host and a client, each a simulated host of lib_netns.sh with its
# own network namespace, /nix store and Nix database.
#
# farm_up [SERVE_YAML_EXTRA] [BUILD_WORKER_YAML_EXTRA]: starts them all.
#   $T/srv: kiln serve (10.15.X.1) with the recipes of tests/fixtures/farm
#   $T/bld: a worker with 4 cores, no GPU, its own copy of the fixtures as
#           its source dir (the recipes build with nix-build there)
#   $T/gpu: a worker with 1 core and one simulated SM 90 GPU: this machine
#           has none, so a stand-in nvidia-smi on the worker's PATH reports
#           an H100 (the worker's detection and `kiln selftest run
#           --detect-host` both ask nvidia-smi). Nothing runs on a GPU: the
#           test stage inspects cubins and runs the CPU program.
#   $T/cli: nothing running; an empty store for substitution checks.
#   Builds need 2 cores, so they never land on the GPU host.
# Sets SERVE_URL, ADMIN, WTOKEN (worker registration), RTOKEN (read), PUBKEY,
# SRV_PID, BLD_PID, GPU_PID.
# farm_api METHOD PATH [BODY], farm_job ID, farm_wait_state ID STATE SECONDS.
# farm_cut_upload JOB BYTES WAIT_S NOTICE_S: a cable pulled mid-upload;
# farm_resumed JOB SECONDS: it succeeded after resuming from an offset.
# Sourcing it skips the test (exit 77) unless nix-build, nix-store, curl,
# python3, nvcc (the fixtures build cubins) and the commands named in
# FARM_NEEDS are here, and traps EXIT to farm_down.
: "${KILN_BIN:?set KILN_BIN}" "${KILN_SRC:?set KILN_SRC}"
for t in nix-build nix-store curl python3 ${FARM_NEEDS:-}; do
    command -v "$t" >/dev/null || { echo "SKIP $t not installed"; exit 77; }
done
[ -x /usr/local/cuda/bin/nvcc ] || { echo "SKIP nvcc not installed (the fixtures build cubins)"; exit 77; }
. "$KILN_SRC/tests/integration/lib_netns.sh"
. "$KILN_SRC/tests/integration/lib_stop.sh"

FARM_DIR=${FARM_DIR:-/var/tmp}
T=$(mktemp -d "$FARM_DIR/kiln-farm-XXXXXX")
mkdir -p "$T/logs"
SRV_PID="" BLD_PID="" GPU_PID=""
# 10.15.<n>: a subnet per run, so two runs never meet.
FARM_NET=10.15.$(($$ % 250 + 1))

trap farm_down EXIT
trap "exit 1" TERM INT

farm_down() {
    stop_pid "$GPU_PID"
    stop_pid "$BLD_PID"
    stop_pid "$SRV_PID"
    netns_down
    rm -rf "$T"
}

fail() {
    echo "FAIL: $*"
    for f in "$T"/logs/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -25 "$f"; }; done
    exit 1
}

# wait_until SECONDS CMD...: polls CMD every 0.2 s.
wait_until() {
    local end=$(($(date +%s) + $1))
    shift
    while [ "$(date +%s)" -lt "$end" ]; do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    return 1
}

jget() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"; }

farm_api() { # METHOD PATH [BODY]: as admin, from the client host's network
    ip netns exec "$NETNS_PREFIX-cli" curl -s -m 30 -X "$1" -H "Authorization: Bearer $ADMIN" \
        ${3:+-H 'Content-Type: application/json' -d "$3"} "$SERVE_URL/api/v1$2"
}
farm_job() { farm_api GET "/jobs/$1"; }
farm_state() { jget "$(farm_job "$1")" 'd["state"]'; }
farm_wait_state() { # ID STATE SECONDS: fails at once on another final state
    local end=$(($(date +%s) + $3)) s
    while [ "$(date +%s)" -lt "$end" ]; do
        s=$(farm_state "$1")
        [ "$s" = "$2" ] && return 0
        case "$s" in succeeded | failed | cancelled | superseded)
            fail "job $1 is $s, not $2: $(farm_job "$1" | head -c 800)" ;;
        esac
        sleep 0.3
    done
    fail "job $1 did not reach $2 in $3 s: $(farm_job "$1" | head -c 600)"
}

farm_up() {
    local rc
    netns_up "kf$$" "$FARM_NET" srv bld gpu cli
    rc=$?
    [ $rc -eq 0 ] || exit $rc
    for h in srv bld gpu cli; do mkdir -p "$T/$h/bin" "$T/$h/cache"; cp "$KILN_BIN" "$T/$h/bin/kiln"; done
    # server
    mkdir -p "$T/srv/recipes"
    cp "$KILN_SRC"/tests/fixtures/farm/*.yaml "$T/srv/recipes/"
    ADMIN=$("$T/srv/bin/kiln" token create --role admin --name it --data "$T/srv/var" | grep -oE 'kiln_[0-9a-f]+')
    WTOKEN=$("$T/srv/bin/kiln" token create --role worker --name it --data "$T/srv/var" | grep -oE 'kiln_[0-9a-f]+')
    RTOKEN=$("$T/srv/bin/kiln" token create --role read --name it --data "$T/srv/var" | grep -oE 'kiln_[0-9a-f]+')
    [ -n "$ADMIN" ] && [ -n "$WTOKEN" ] && [ -n "$RTOKEN" ] || fail "token create"
    printf 'heartbeat_s: 2\nlost_after_s: 30\n%s\n' "${1:-}" >"$T/srv/serve.yaml"
    local sip
    sip=$(netns_ip srv)
    SERVE_URL=http://$sip:8015
    host_spawn srv "$T/srv" "$T/srv/bin/kiln" serve --listen "$sip:8015" --data "$T/srv/var" \
        --recipes "$T/srv/recipes" --config "$T/srv/serve.yaml" >"$T/logs/serve.log" 2>&1
    SRV_PID=$HOST_PID
    wait_until 20 ip netns exec "$NETNS_PREFIX-cli" curl -sf "$SERVE_URL/healthz" || fail "kiln serve did not start"
    PUBKEY=$(cat "$T/srv/var/keys/nix-cache.sec.pub" 2>/dev/null)
    [ -n "$PUBKEY" ] || fail "no farm key at $T/srv/var/keys/nix-cache.sec.pub"
    # build host
    mkdir -p "$T/bld/src"
    cp "$KILN_SRC"/tests/fixtures/farm/* "$T/bld/src/"
    printf 'gpus: none\n%s\n' "${2:-}" >"$T/bld/worker.yaml"
    # Builds run as root, not as nixbld users: each simulated host has its
    # own Nix with its own user pool, and two Nix instances that both take
    # nixbld1 kill each other's builders (Nix kills the build user's
    # processes before a build).
    host_spawn bld "$T/bld" env XDG_CACHE_HOME="$T/bld/cache" NIX_CONFIG="build-users-group =" \
        "$T/bld/bin/kiln" worker \
        --server "$SERVE_URL" --token "$WTOKEN" --config "$T/bld/worker.yaml" --name build1 \
        --work-dir "$T/bld/work" --source-dir "$T/bld/src" --cores 4 --ram 8G >"$T/logs/build1.log" 2>&1
    BLD_PID=$HOST_PID
    # GPU-test host: a stand-in nvidia-smi reports one SM 90 GPU
    cat >"$T/gpu/bin/nvidia-smi" <<'SMI'
#!/bin/sh
# Stand-in for nvidia-smi on a machine without a GPU: one simulated H100.
case "$*" in
*index,name*) echo "0, NVIDIA H100 80GB HBM3 (simulated), 9.0, 81559, 580.65.06" ;;
*compute_cap*) echo "9.0, 580.65.06" ;;
*) echo "GPU 0: NVIDIA H100 80GB HBM3 (simulated)" ;;
esac
SMI
    chmod +x "$T/gpu/bin/nvidia-smi"
    host_spawn gpu "$T/gpu" env PATH="$T/gpu/bin:$PATH" XDG_CACHE_HOME="$T/gpu/cache" \
        "$T/gpu/bin/kiln" worker --server "$SERVE_URL" --token "$WTOKEN" --name gpu1 \
        --work-dir "$T/gpu/work" --cores 1 --ram 4G >"$T/logs/gpu1.log" 2>&1
    GPU_PID=$HOST_PID
    online() { [ "$(jget "$(farm_api GET /workers)" 'sum(1 for w in d["workers"] if w["state"]=="online")')" = 2 ]; }
    wait_until 30 online || fail "two workers not online: $(farm_api GET /workers)"
    farm_api GET /workers | grep -q '"sm": *"90"' || fail "the GPU host does not advertise its simulated GPU: $(farm_api GET /workers)"
}

# nix-store -r PATH on HOST from the server's cache, signatures required,
# a read token in a netrc (Basic auth, as Nix sends it).
farm_substitute() { # HOST PATH...
    local host=$1
    shift
    printf 'machine %s login kiln password %s\n' "$(netns_ip srv)" "$RTOKEN" >"$T/$host/netrc"
    host_run "$host" "$T/$host" env XDG_CACHE_HOME="$T/$host/cache" nix-store -r "$@" \
        --option substituters "$SERVE_URL/nix-cache" --option trusted-public-keys "$PUBKEY" \
        --option require-sigs true --option narinfo-cache-negative-ttl 0 \
        --option netrc-file "$T/$host/netrc"
}

# farm_cut_upload JOB BYTES WAIT_S NOTICE_S: once a staging upload on the
# server has passed BYTES (waiting at most WAIT_S), sets the build host's
# link down (a pulled cable: no error, just silence), waits at most NOTICE_S
# until JOB's log says that the worker noticed and asks where to resume,
# then heals the link. Sets FARM_CUT_AT: the upload's size when cut.
farm_staging_part_size() {
    local f
    f=$(ls "$T"/srv/var/catalog/staging/*.part 2>/dev/null | head -1)
    [ -n "$f" ] && stat -c %s "$f"
}
farm_cut_upload() {
    local job=$1 bytes=$2
    past() { [ "$(farm_staging_part_size)" -gt "$bytes" ]; }
    wait_until "$3" past || fail "no staging upload past $bytes bytes in progress"
    FARM_CUT_AT=$(farm_staging_part_size)
    netns_link bld down
    wait_until "$4" grep -q "asking the server where to resume" "$T/bld/work/logs/$job-1.log" ||
        fail "the worker did not notice the cut link"
    netns_link bld up
}

# farm_resumed JOB SECONDS: waits (at most SECONDS) until JOB succeeded and
# checks that its log shows the upload of its output resumed from an offset
# past 0. Sets VP (the output path), VLOG (the job's log) and RESUMED_AT.
farm_resumed() {
    farm_wait_state "$1" succeeded "$2"
    VP=$(jget "$(farm_job "$1")" 'd["outputs"][0]')
    VLOG=$(farm_api GET "/jobs/$1/log")
    RESUMED_AT=$(echo "$VLOG" | sed -n "s|.*resuming $VP: .* from offset \([0-9]*\)|\1|p" | tail -1)
    [ -n "$RESUMED_AT" ] && [ "$RESUMED_AT" -gt 0 ] || fail "no resume from an offset: $VLOG"
}
