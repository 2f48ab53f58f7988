# Sourced by integration tests: simulated hosts on one machine.
#
# netns_up PREFIX SUBNET HUB HOST...: network namespaces PREFIX-HUB and
#   PREFIX-HOST..., each HOST joined by a veth pair to a bridge in the hub
#   (SUBNET.1 is the hub, SUBNET.11, .12, ... the hosts in order; SUBNET is
#   like 10.15.0, used only inside these namespaces). netns_down removes
#   them all (run it from the test's EXIT trap).
# netns_ip HOST: the host's address.  netns_link HOST down|up: cut or heal
#   the host's link (the hub side of its veth), as a pulled cable would.
# host_run HOST DIR CMD...: runs CMD in HOST's network namespace and in a
#   mount namespace of its own where DIR/nix is /nix (an empty dir gives an
#   empty store and Nix database: Nix creates them) and every other
#   directory beside DIR is hidden under an empty tmpfs: the simulated hosts
#   share the OS image (/usr, the kiln binary) and nothing else. Execs, so
#   host_spawn HOST DIR CMD... starts it in the background (HOST_PID).
# Needs root, ip(8) and unshare(1); netns_up returns 77 (skip) without them.
NETNS_PREFIX=""
NETNS_HOSTS=()
NETNS_SUBNET=""

netns_up() {
    NETNS_PREFIX=$1 NETNS_SUBNET=$2
    shift 2
    local hub=$1
    shift
    command -v ip >/dev/null && command -v unshare >/dev/null || { echo "SKIP needs ip and unshare"; return 77; }
    [ "$(id -u)" -eq 0 ] || { echo "SKIP needs root for namespaces"; return 77; }
    ip netns add "$NETNS_PREFIX-$hub" 2>/dev/null || { echo "SKIP cannot create network namespaces here"; return 77; }
    NETNS_HOSTS=("$hub")
    local h="$NETNS_PREFIX-$hub" i=1
    ip -n "$h" link set lo up
    ip -n "$h" link add br0 type bridge
    ip -n "$h" addr add "$NETNS_SUBNET.1/24" dev br0
    ip -n "$h" link set br0 up
    for n in "$@"; do
        ip netns add "$NETNS_PREFIX-$n" || return 1
        NETNS_HOSTS+=("$n")
        ip -n "$NETNS_PREFIX-$n" link set lo up
        ip link add "${NETNS_PREFIX}v$i" netns "$h" type veth peer name eth0 netns "$NETNS_PREFIX-$n" || return 1
        ip -n "$h" link set "${NETNS_PREFIX}v$i" master br0 up
        ip -n "$NETNS_PREFIX-$n" addr add "$NETNS_SUBNET.$((10 + i))/24" dev eth0
        ip -n "$NETNS_PREFIX-$n" link set eth0 up
        i=$((i + 1))
    done
}

netns_down() {
    for n in "${NETNS_HOSTS[@]}"; do ip netns del "$NETNS_PREFIX-$n" 2>/dev/null; done
    NETNS_HOSTS=()
}

# Index of HOST in the netns_up order (0 = hub).
netns_index() {
    local i=0
    for n in "${NETNS_HOSTS[@]}"; do
        [ "$n" = "$1" ] && { echo $i; return 0; }
        i=$((i + 1))
    done
    return 1
}

netns_ip() {
    local i
    i=$(netns_index "$1") || return 1
    if [ "$i" -eq 0 ]; then echo "$NETNS_SUBNET.1"; else echo "$NETNS_SUBNET.$((10 + i))"; fi
}

netns_link() {
    local i
    i=$(netns_index "$1") || return 1
    ip -n "$NETNS_PREFIX-${NETNS_HOSTS[0]}" link set "${NETNS_PREFIX}v$i" "$2"
}

# The command line that runs "$@" as HOST with DIR (see host_run).
_host_argv() {
    local host=$1 dir=$2
    shift 2
    mkdir -p "$dir/nix"
    HOST_ARGV=(ip netns exec "$NETNS_PREFIX-$host" unshare --mount --propagation private --
        bash -c 'd=$1; shift
                 mount --bind "$d/nix" /nix || exit 1
                 for o in "$(dirname "$d")"/*/; do
                     [ "${o%/}" = "$d" ] || mount -t tmpfs -o size=1m none "$o" || exit 1
                 done
                 exec "$@"' host_run "$dir" "$@")
}

host_run() {
    _host_argv "$@"
    "${HOST_ARGV[@]}"
}

# host_spawn HOST DIR CMD...: host_run in the background; HOST_PID is CMD's
# pid (every step execs), for stop_pid.
host_spawn() {
    _host_argv "$@"
    (exec "${HOST_ARGV[@]}") &
    HOST_PID=$!
}
