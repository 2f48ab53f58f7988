#!/usr/bin/env bash
# Installs the Debian packages kiln needs, only those missing. Idempotent:
# a second run does nothing and takes well under a second.
set -eu
pkgs=(build-essential pkg-config clang git curl sqlite3 iproute2 procps
      libuv1-dev libgit2-dev libcurl4-openssl-dev libsqlite3-dev libyaml-dev
      libjansson-dev libhttp-parser-dev libssl-dev libcmocka-dev nix-bin
      python3)
# The Slurm executor's integration tests start a real Slurm on this host
# (tests/integration/lib_slurm.sh); KILN_NO_SLURM=1 leaves it out.
if [ "${KILN_NO_SLURM:-0}" != 1 ]; then pkgs+=(slurm-wlm slurm-client munge); fi
# Browser tests (web/) need Debian's chromium and node/npm for playwright-core.
if [ "${KILN_NO_BROWSER:-0}" != 1 ]; then pkgs+=(chromium nodejs npm); fi
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# nodejs/npm may come from elsewhere on the host; accept working binaries.
if command -v node >/dev/null && command -v npm >/dev/null; then
    tmp=(); for p in "${missing[@]}"; do case $p in nodejs|npm) ;; *) tmp+=("$p");; esac; done
    missing=("${tmp[@]+"${tmp[@]}"}")
fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-deps: missing packages and not root; run: sudo apt-get install ${missing[*]}" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || true
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# nix-bin as root without a daemon: make sure the store and build users exist.
if command -v nix-build >/dev/null && [ "$(id -u)" -eq 0 ]; then
    mkdir -p /nix/var/nix/profiles /nix/var/nix/gcroots
    if ! getent group nixbld >/dev/null; then groupadd -r nixbld || true; fi
    for i in 1 2 3 4; do
        id "nixbld$i" >/dev/null 2>&1 || useradd -r -g nixbld -G nixbld -d /var/empty -s /usr/sbin/nologin "nixbld$i" 2>/dev/null || true
    done
fi
exit 0
