#!/usr/bin/env bash
# The chaos suite's second bounded form (tests/chaos/, issue 16) in the
# integration step: one round of each fault beyond SIGKILL of serve (worker
# killed mid-build and mid-log-upload, a cut link, a busy SQLite, a full log
# disk) plus a serve kill, with publishes in the mix; 18 jobs. `make chaos`
# runs the full form.
exec bash "$(dirname "$0")/../chaos/test_chaos_faults.sh" "$@"
