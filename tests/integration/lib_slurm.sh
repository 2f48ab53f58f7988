# Sourced by integration tests and benches: a real Slurm on this host.
# start_slurm DIR starts munged (own key and socket under DIR/munge, so it
# never touches a system munged), slurmctld and two slurmd ($SLURM_N1;
# $SLURM_N2 with a gpu:h100 GRES; names n1-PORT, n2-PORT so that clusters
# of parallel tests never share a cgroup), all on loopback ports picked
# free, from the templates in tests/integration/slurm/ (SLURM_CONF_TEMPLATE
# overrides slurm.conf.in). It exports SLURM_CONF so sbatch/squeue/scancel
# talk to this cluster, and sets SLURM_DIR and SLURM_PID[name].
# Returns 77 with a "SKIP: ..." line when Slurm cannot start here.
# stop_slurm stops only the processes start_slurm started, by pid.
# slurm_kill_node NODE kills that node's slurmd (SIGKILL), slurm_start_node
# NODE starts it again.
SLURM_N1=""
SLURM_N2=
export KILN_SRC=${KILN_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# The real interpreter, not a version manager's shim (a shim costs a second
# per call on a busy host, and the tests call python often).
PY=$(python3 -c 'import sys; print(sys.executable)')
SLURM_DIR=""
declare -A SLURM_PID=()

slurm_free_port() {
    "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

slurm_start_node() {
    local n=$1
    slurmd -D -f "$SLURM_CONF" -N "$n" >>"$SLURM_DIR/slurmd.$n.out" 2>&1 &
    SLURM_PID[$n]=$!
}

slurm_kill_node() {
    local n=$1 p=${SLURM_PID[$1]:-}
    [ -n "$p" ] || return 0
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
    SLURM_PID[$n]=""
}

# slurm_wait_idle COUNT: waits (at most 30 s) until COUNT nodes are idle.
slurm_wait_idle() {
    local want=$1 got=0
    for _ in $(seq 1 300); do
        got=$(sinfo -h -N -t idle -o '%N' 2>/dev/null | sort -u | wc -l)
        [ "$got" -ge "$want" ] && return 0
        sleep 0.1
    done
    return 1
}

start_slurm() {
    local dir=$1 t=$KILN_SRC/tests/integration/slurm
    if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null ||
       ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
        echo "SKIP: slurm-wlm/munge not installed (scripts/install-deps.sh installs them)"
        return 77
    fi
    if [ "$(id -u)" -ne 0 ]; then
        echo "SKIP: slurmd needs root for its cgroups here"
        return 77
    fi
    SLURM_DIR=$dir
    mkdir -p "$dir/munge" "$dir/state"
    chmod 700 "$dir/munge"
    dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$dir/munge/munge.key"
    munged -F -f --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
        --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" \
        --seed-file="$dir/munge/munged.seed" >"$dir/munge/munged.out" 2>&1 &
    SLURM_PID[munged]=$!
    local host ctld n1 n2
    host=$(hostname -s)
    ctld=$(slurm_free_port); n1=$(slurm_free_port); n2=$(slurm_free_port)
    SLURM_N1=n1-$ctld
    SLURM_N2=n2-$ctld
    mkdir -p "$dir/spool/$SLURM_N1" "$dir/spool/$SLURM_N2"
    local subst=(-e "s|@DIR@|$dir|g" -e "s|@HOST@|$host|g" -e "s|@CTLD_PORT@|$ctld|g"
        -e "s|@N1_PORT@|$n1|g" -e "s|@N2_PORT@|$n2|g" -e "s|@N1@|$SLURM_N1|g" -e "s|@N2@|$SLURM_N2|g")
    sed "${subst[@]}" "${SLURM_CONF_TEMPLATE:-$t/slurm.conf.in}" >"$dir/slurm.conf"
    sed "${subst[@]}" "$t/gres.conf" >"$dir/gres.conf"
    cp "$t/cgroup.conf" "$dir/"
    export SLURM_CONF=$dir/slurm.conf
    for _ in $(seq 1 50); do [ -S "$dir/munge/munge.socket" ] && break; sleep 0.1; done
    if [ ! -S "$dir/munge/munge.socket" ]; then
        echo "SKIP: munged did not start:"; cat "$dir/munge/munged.out" "$dir/munge/munged.log" 2>/dev/null
        stop_slurm; return 77
    fi
    slurmctld -D -i -f "$SLURM_CONF" >"$dir/slurmctld.out" 2>&1 &
    SLURM_PID[slurmctld]=$!
    for _ in $(seq 1 100); do scontrol ping >/dev/null 2>&1 && break; sleep 0.1; done
    slurm_start_node "$SLURM_N1"
    slurm_start_node "$SLURM_N2"
    if ! slurm_wait_idle 2; then
        echo "SKIP: slurm nodes did not come up:"
        sinfo -N 2>&1; tail -5 "$dir"/slurmctld.log "$dir"/slurmd.*.log "$dir"/*.out 2>/dev/null
        stop_slurm; return 77
    fi
    return 0
}

# The step daemons (slurmstepd) of this cluster's nodes: Slurm puts each in
# a cgroup named after its node, and node names are unique per cluster.
slurm_own_stepds() {
    local p
    for p in $(pgrep -f '^slurmstepd:' 2>/dev/null); do
        grep -qE ":/slurm_($SLURM_N1|$SLURM_N2)/" "/proc/$p/cgroup" 2>/dev/null && echo "$p"
    done
}

stop_slurm() {
    local k p
    # Jobs first, while slurmd still runs them down cleanly.
    if [ -n "${SLURM_PID[slurmctld]:-}" ] && [ -n "$SLURM_N1" ]; then
        scancel --quiet --partition=kiln 2>/dev/null
        for _ in $(seq 1 50); do
            [ -z "$(squeue -h -t PENDING,RUNNING,COMPLETING 2>/dev/null)" ] && break
            sleep 0.1
        done
    fi
    for k in "$SLURM_N1" "$SLURM_N2" slurmctld munged; do
        [ -n "$k" ] || continue
        p=${SLURM_PID[$k]:-}
        [ -n "$p" ] || continue
        kill -TERM "$p" 2>/dev/null
        for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null
        wait "$p" 2>/dev/null
        SLURM_PID[$k]=""
    done
    # A node whose slurmd was killed (slurm_kill_node) may leave its step
    # daemons behind: they are ours, end them by pid.
    for p in $(slurm_own_stepds); do kill -KILL "$p" 2>/dev/null; done
    return 0
}

# start_serve_slurm DIR [POOL_YAML_EXTRA]: kiln serve on a free loopback
# port with one Slurm pool "it" on partition kiln (SM 90 -> gpu:h100 +
# sm_90, avx2 -> x86-64-v3). Needs start_slurm first and KILN_BIN. Sets
# SERVE_PID, PORT, U, ADMIN, WT; the step's worker config is DIR/step.yaml.
start_serve_slurm() {
    local d=$1 extra=${2-}
    mkdir -p "$d/steps" "$d/out"
    ADMIN=$("$KILN_BIN" token create --data "$d/data" --role admin | grep -oE 'kiln_[0-9a-f]{48}')
    WT=$("$KILN_BIN" token create --data "$d/data" --role worker | grep -oE 'kiln_[0-9a-f]{48}')
    printf '%s\n' "$WT" >"$d/worker.token"
    chmod 600 "$d/worker.token"
    PORT=${PORT:-$(slurm_free_port)}
    cat >"$d/step.yaml" <<Y
server: http://127.0.0.1:$PORT
token_file: $d/worker.token
work_dir: $d/steps
limit_method: poll
Y
    cat >"$d/serve.yaml" <<Y
slurm:
  pools:
    - name: it
      partition: kiln
      kiln: $KILN_BIN
      worker_config: $d/step.yaml
      out_dir: $d/out
      poll_ms: 250
      gpus: {"90": {gres: "gpu:h100", feature: "sm_90"}}
      isa_features: {avx2: x86-64-v3}
$extra
Y
    "$KILN_BIN" serve --listen 127.0.0.1:$PORT --data "$d/data" --config "$d/serve.yaml" \
        >>"$d/serve.log" 2>&1 &
    SERVE_PID=$!
    U=http://127.0.0.1:$PORT/api/v1
    for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.05; done
    # the pool registers once sinfo and squeue answered
    for _ in $(seq 1 100); do
        curl -fs -H "Authorization: Bearer $ADMIN" "$U/workers" 2>/dev/null | grep -q '"slurm-it"' && return 0
        sleep 0.1
    done
    echo "slurm pool did not register:"; tail -20 "$d/serve.log"
    return 1
}

# slurm_test_setup NAME: the opening of a test of kiln against this Slurm.
# Needs KILN_BIN (KILN is set to it) and sources lib_stop.sh. Makes T (/tmp/kiln-NAME-XXXXXX), traps EXIT to stop serve and Slurm and
# remove T (kept with KEEP=1), starts Slurm (the test exits 77 where it
# cannot run) and start_serve_slurm, exports KILN_SERVER and KILN_TOKEN for
# the CLI, and defines: fail MSG (with the end of serve's log), jid (the
# first job id of `kiln submit --json` on stdin), jget ID EXPR (EXPR on the
# job's JSON d) and wait_final ID (at most ${WAIT_FINAL_S:-60} s).
slurm_test_setup() {
    : "${KILN_BIN:?}"
    KILN=$KILN_BIN
    . "$KILN_SRC/tests/integration/lib_stop.sh"
    T=$(mktemp -d "/tmp/kiln-$1-XXXXXX")
    SERVE_PID=""
    trap 'stop_pid "$SERVE_PID"; stop_slurm; [ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
    fail() { echo "FAIL: $*"; tail -30 "$T/serve.log"; exit 1; }
    jid() { "$PY" -c 'import json,sys;print(json.load(sys.stdin)["jobs"][0]["id"])'; }
    jget() { curl -s -H "Authorization: Bearer $ADMIN" "$U/jobs/$1" | "$PY" -c "import json,sys;d=json.load(sys.stdin);print($2)"; }
    wait_final() {
        for _ in $(seq 1 $((${WAIT_FINAL_S:-60} * 10))); do
            case $(jget "$1" 'd["state"]') in succeeded|failed|cancelled) return 0;; esac
            sleep 0.1
        done
        fail "job $1 did not finish: $(jget "$1" 'd')"
    }
    start_slurm "$T/slurm"
    local rc=$?
    [ $rc -eq 0 ] || exit $rc
    start_serve_slurm "$T" || fail "serve"
    export KILN_SERVER=http://127.0.0.1:$PORT KILN_TOKEN=$ADMIN
}
