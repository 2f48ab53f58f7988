#!/usr/bin/env bash
# bench/peers/install.sh - the peers bench/peers.sh runs beside kiln, from
# Debian packages (bench only: make check does not need them).
# Laminar is not packaged in Debian 12 (apt-cache policy laminar: nothing),
# so it is reported as absent rather than built from source.
# Slurm comes from the slurm17 branch's tests/integration/lib_slurm.sh
# (slurm-wlm + munge, installed by that branch's install-deps.sh).
set -eu
want=()
command -v buildbot >/dev/null || want+=(buildbot)
command -v buildbot-worker >/dev/null || want+=(buildbot-worker)
if [ ${#want[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || { echo "install as root: apt-get install ${want[*]}" >&2; exit 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${want[@]}"
fi
if apt-cache policy laminar 2>/dev/null | grep -q Candidate; then
    command -v laminard >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y laminar
else
    echo "laminar: not packaged in this Debian release; skipped"
fi
