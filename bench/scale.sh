#!/usr/bin/env bash
# bench/scale.sh - kiln serve with a large history: for each size H in SIZES
# (jobs in history, plus Q queued), a database is filled with realistic rows
# (a vLLM-like variant's name, command, env, attrs, commit) straight through
# SQLite, then `kiln serve` is (re)started on it and measured:
#   ready_ms   start of the process -> first answered GET /api/v1/jobs?limit=100
#   rss_mb     VmRSS of serve after the queue and history pages were read
#   page_ms    GET /api/v1/jobs?state=queued&limit=100 (median of 21 on one
#              keep-alive connection; the queue view reads 50 a page), and
#   page_cpu   serve's own CPU per such GET (utime+stime over 100 GETs): the
#              figure the machine's load does not move
#   queue_ms   GET /api/v1/jobs?state=queued&limit=1000 (median of 11)
#   queue_all  all Q queued jobs through GET /jobs, paged by 1000 (what the
#              queue view read before GET /queue; Python client)
#   queue_one  all Q queued jobs in one GET /api/v1/queue (median of 11,
#              curl: what the queue view reads now), and queue_one_cpu,
#              serve's own CPU per such GET (over 20 GETs); baseline:
#              Python's sqlite3 reading the same columns of the Q rows and
#              json.dumps (median of 5)
#   bytes/job  (kiln.db + wal) / (H + Q) after a checkpoint
# Baselines in the same run: the sqlite3 CLI opening the same file and
# counting the jobs (ready), serve on an empty database (RSS), and Python's
# sqlite3 reading the same 1000 queued rows in-process (queue_ms).
#
#   bash bench/scale.sh [SIZES="10000 100000 1000000"] [Q=1000] [OUT=file.tsv]
# Prints one line per size and writes a TSV that bench/plot_scale.py plots.
set -eu
SIZES=${1:-10000 100000 1000000}
Q=${2:-1000}
OUT=${3:-/dev/null}
SRC=$(cd "$(dirname "$0")/.." && pwd)
KILN=${KILN_BIN:-$SRC/build/kiln}
T=$(mktemp -d "${TMPDIR:-/tmp}/kiln-scale-XXXXXX")
SPID=""
cleanup() {
    [ -n "$SPID" ] && { kill -TERM "$SPID" 2>/dev/null; wait "$SPID" 2>/dev/null; }
    rm -rf "$T"
}
trap cleanup EXIT
now_ms() { date +%s%3N; }

. "$SRC/bench/lib/fill_jobs.sh" # fill DB H Q

start() { # DATA -> sets SPID, PORT
    : >"$1.log"
    "$KILN" serve --listen 127.0.0.1:0 --data "$1" --allow-anonymous-read >>"$1.log" 2>&1 &
    SPID=$!
    PORT=""
    while [ -z "$PORT" ]; do
        PORT=$(sed -n 's/.*listening on .*(port \([0-9]*\)).*/\1/p' "$1.log" | tail -1)
        kill -0 "$SPID" 2>/dev/null || { cat "$1.log"; exit 1; }
        [ -n "$PORT" ] || sleep 0.005
    done
}
CL() { python3 "$SRC/bench/lib/kiln_client.py" "http://127.0.0.1:$PORT" "" "$@"; }
stop() { kill -TERM "$SPID"; wait "$SPID" 2>/dev/null || true; SPID=""; }
rss_mb() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
get_ms() { curl -s -o /dev/null -w "%{time_total}\n" "$1" | awk "{printf \"%.2f\\n\", \$1 * 1000}"; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

# Baseline for RSS: serve on an empty database, after the same GETs.
"$KILN" token create --role submit --data "$T/empty" >/dev/null 2>&1
start "$T/empty"
curl -s -o /dev/null "http://127.0.0.1:$PORT/api/v1/jobs?limit=100"
RSS0=$(rss_mb "$SPID")
stop

printf 'jobs\tready_ms\tready_base_ms\trss_mb\trss_empty_mb\tpage_ms\tpage_cpu_ms\tqueue_ms\tqueue_base_ms\tqueue_all_ms\tbytes_per_job\tqueue_one_ms\tqueue_one_cpu_ms\n' >"$OUT"
for H in $SIZES; do
    D=$T/h$H
    "$KILN" token create --role submit --data "$D" >/dev/null 2>&1 # creates the schema
    t0=$(now_ms)
    fill "$D/kiln.db" "$H" "$Q"
    fill_s=$(awk -v a="$t0" -v b="$(now_ms)" 'BEGIN{printf "%.1f", (b - a) / 1000}')
    bytes=$(( $(stat -c %s "$D/kiln.db") + $(stat -c %s "$D/kiln.db-wal" 2>/dev/null || echo 0) ))
    # Restart to serving: process start -> the first page answered.
    sync
    t0=$(now_ms)
    start "$D"
    until curl -sf -o /dev/null "http://127.0.0.1:$PORT/api/v1/jobs?limit=100"; do sleep 0.005; done
    ready=$(( $(now_ms) - t0 ))
    t0=$(now_ms)
    sqlite3 "$D/kiln.db" "SELECT count(*) FROM jobs" >/dev/null
    ready0=$(( $(now_ms) - t0 ))
    U="http://127.0.0.1:$PORT/api/v1"
    pms=$(CL time "/jobs?state=queued&limit=100" 21)
    c0=$(awk '{print $14 + $15}' "/proc/$SPID/stat")
    CL time "/jobs?state=queued&limit=100" 100 >/dev/null
    pcpu=$(awk -v a="$c0" -v t="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15 - a) / t * 1000 / 100}' "/proc/$SPID/stat")
    qms=$(CL time "/jobs?state=queued&limit=1000" 11)
    qbase=$(python3 - "$D/kiln.db" <<'PY'
import sqlite3, sys, time, json
c = sqlite3.connect(sys.argv[1])
def best(sql):
    ts = []
    for _ in range(5):
        t = time.perf_counter()
        rows = c.execute(sql).fetchall()
        json.dumps([list(r) for r in rows])
        ts.append((time.perf_counter() - t) * 1000)
    return sorted(ts)[2]
print("%.2f %.2f" % (best("SELECT * FROM jobs WHERE state='queued' ORDER BY id DESC LIMIT 1000"),
                     best("SELECT id, name, recipe, branch, state, stage, priority, platform, "
                          "gpu_sm, isa, attrs, created_at FROM jobs WHERE state='queued'")))
PY
)
    qbase_all=${qbase#* }
    qbase=${qbase% *}
    t0=$(date +%s%N)
    python3 "$SRC/bench/lib/kiln_client.py" "http://127.0.0.1:$PORT" "" pages queued >/dev/null
    qall=$(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN{printf "%.1f", (b - a) / 1e6}')
    qone=$(for _ in $(seq 11); do get_ms "$U/queue"; done | median)
    qn=$(curl -s "$U/queue" | python3 -c 'import json, sys; d = json.load(sys.stdin); print(len(d["jobs"]))')
    [ "$qn" = "$Q" ] || { echo "scale: GET /queue gave $qn jobs, want $Q" >&2; exit 1; }
    c0=$(awk '{print $14 + $15}' "/proc/$SPID/stat")
    for _ in $(seq 20); do curl -s -o /dev/null "$U/queue"; done
    qcpu=$(awk -v a="$c0" -v t="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15 - a) / t * 1000 / 20}' "/proc/$SPID/stat")
    curl -s -o /dev/null "$U/jobs?limit=100"
    rss=$(rss_mb "$SPID")
    stop
    bpj=$(( bytes / (H + Q) ))
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$H" "$ready" "$ready0" "$rss" "$RSS0" "$pms" "$pcpu" "$qms" "$qbase" "$qall" "$bpj" "$qone" "$qcpu" >>"$OUT"
    echo "scale H=$H Q=$Q load=\"$(cut -d' ' -f1-3 /proc/loadavg)\" (filled in ${fill_s} s):" \
        "ready ${ready} ms (sqlite3 count ${ready0} ms, ratio $(awk -v a="$ready" -v b="$ready0" 'BEGIN{printf "%.1f", a / (b > 0 ? b : 1)}'));" \
        "RSS ${rss} MB (empty db ${RSS0} MB);" \
        "queue page of 100 ${pms} ms (serve CPU ${pcpu} ms); queue GET 1000 ${qms} ms (python sqlite3 ${qbase} ms, ratio $(awk -v a="$qms" -v b="$qbase" 'BEGIN{printf "%.2f", a / b}'));" \
        "all $Q queued: paged GET /jobs ${qall} ms, one GET /queue ${qone} ms (serve CPU ${qcpu} ms; python sqlite3 reading and dumping the same columns ${qbase_all} ms); ${bpj} bytes/job"
done
