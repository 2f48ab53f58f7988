# Sourced by integration tests: stop_pid PID stops a process this test
# started: TERM, a second TERM (a worker then hands its jobs back instead of
# waiting to report them to a server that may be gone), at most 10 s of
# waiting, then KILL. Never blocks a test run.
stop_pid() {
    local p=$1
    [ -n "$p" ] || return 0
    kill -CONT "$p" 2>/dev/null
    kill -TERM "$p" 2>/dev/null || return 0
    sleep 0.3
    kill -TERM "$p" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
    return 0
}
