#!/usr/bin/env bash
# Local test hosts for examples/fleet (and bench/fleet.sh): each host is a Linux network
# namespace with a veth pair on a bridge, an address of its own and its own sshd (default
# settings, a generated host key, an authorized key made here). Needs root, iproute2 and
# openssh-server.
#
#     examples/fleet/hosts.sh up 4      # 4 hosts; writes deployer.toml beside this file
#     examples/fleet/hosts.sh down      # removes the hosts, the bridge, the keys, the apps
#     examples/fleet/hosts.sh status
#
# Everything it makes is named after FLEET_TAG (default "fleet") and lives in FLEET_NET.0/24
# (default 10.240.7): namespaces fleet-h1.., bridge fleet-br, and the folder .fleet/ beside
# this file (keys, known_hosts, sshd configs and logs, and each host's deploy root under
# .fleet/hosts/IP: the namespaces share the file system, so each host gets its own folder).
# FLEET_DIR moves that folder and the deployer.toml (tests and the benchmark use it);
# FLEET_RC=read lets the hosts' shells read ~/.bashrc (see below).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
tag=${FLEET_TAG:-fleet}
net=${FLEET_NET:-10.240.7}
dir=${FLEET_DIR:-$here}
state="$dir/.fleet"
bridge="$tag-br"

die() { echo "hosts.sh: $*" >&2; exit 1; }

need_root() {
    [ "$(id -u)" = 0 ] || die "needs root (network namespaces): run it with sudo"
    for t in ip /usr/sbin/sshd ssh-keygen; do
        command -v "$t" >/dev/null || die "$t is missing: apt-get install iproute2 openssh-server openssh-client"
    done
}

ns_of() { echo "$tag-h$1"; }

down() {
    need_root
    for pidfile in "$state"/sshd_*.pid; do
        [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
    done
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$tag-h[0-9]+$" || true); do
        # sshd's sessions and the apps the deploys started there.
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null || true
    done
    ip link del "$bridge" 2>/dev/null || true
    rm -rf "$state" "$dir/deployer.toml"
    echo "removed the $tag hosts"
}

up() {
    local n=${1:-3}
    [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 50 ] || die "up N: N must be 1 to 50, got '$n'"
    need_root
    [ -e "$state" ] && die "$state exists: run '$0 down' first"
    # Leftovers of a run whose folder is gone (same names, so they would collide).
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$tag-h[0-9]+$" || true); do
        ip netns del "$ns" 2>/dev/null || true
    done
    ip link del "$bridge" 2>/dev/null || true
    mkdir -p "$state/hosts" /run/sshd
    chmod 700 "$state"
    ip link add "$bridge" type bridge
    ip addr add "$net.1/24" dev "$bridge"
    ip link set "$bridge" up
    ssh-keygen -q -t ed25519 -N '' -f "$state/client_key" -C "deployer fleet example"
    cp "$state/client_key.pub" "$state/authorized_keys"
    : > "$state/known_hosts"
    # The hosts share this machine's users and their shell start-up files. bash started
    # by sshd reads ~/.bashrc only as a top-level shell (SHLVL below 2): FLEET_RC=skip
    # (the default) makes the login shell a second-level one, so that a ~/.bashrc written
    # for this machine's own terminals (here: pyenv init, which takes a lock that stalls
    # concurrent logins) does not run on every test host's commands. FLEET_RC=read keeps it.
    local rc_line=""
    case "${FLEET_RC:-skip}" in
        skip) rc_line="SetEnv SHLVL=1" ;;
        read) ;;
        *) die "FLEET_RC must be skip or read, got '${FLEET_RC}'" ;;
    esac
    local hosts="" vars=""
    for i in $(seq 1 "$n"); do
        local ns ip
        ns=$(ns_of "$i")
        ip="$net.$((10 + i))"
        ip netns add "$ns"
        ip link add "$tag-v$i" type veth peer name "$tag-n$i"
        ip link set "$tag-v$i" master "$bridge" up
        ip link set "$tag-n$i" netns "$ns"
        ip netns exec "$ns" ip addr add "$ip/24" dev "$tag-n$i"
        ip netns exec "$ns" ip link set "$tag-n$i" up
        ip netns exec "$ns" ip link set lo up
        ssh-keygen -q -t ed25519 -N '' -f "$state/host_key_$i"
        echo "$ip $(cat "$state/host_key_$i.pub")" >> "$state/known_hosts"
        cat > "$state/sshd_$i.conf" <<EOF
ListenAddress $ip
HostKey $state/host_key_$i
PidFile $state/sshd_$i.pid
AuthorizedKeysFile $state/authorized_keys
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin prohibit-password
Subsystem sftp /usr/lib/openssh/sftp-server
LogLevel VERBOSE
$rc_line
EOF
        ip netns exec "$ns" /usr/sbin/sshd -f "$state/sshd_$i.conf" -E "$state/sshd_$i.log"
        mkdir -p "$state/hosts/$ip"
        hosts="$hosts${hosts:+, }\"$ip\""
        vars="$vars
[env.fleet.host_vars.\"$ip\"]
url = \"http://$ip:8080\"
listen = \"$ip\"
root = \"$state/hosts/$ip/app\"
"
    done
    # Wait (bounded) until every sshd accepts connections.
    for i in $(seq 1 "$n"); do
        local ok=""
        for _ in $(seq 1 50); do
            if (exec 3<>"/dev/tcp/$net.$((10 + i))/22") 2>/dev/null; then ok=1; break; fi
            sleep 0.1
        done
        [ -n "$ok" ] || die "sshd of host $i ($net.$((10 + i))) did not start: $(cat "$state/sshd_$i.log")"
    done
    cat > "$dir/deployer.toml" <<EOF
# Written by hosts.sh up $n; removed by hosts.sh down.
default_env = "fleet"
state_dir = ".fleet/deployer"

[env.fleet]
hosts = [$hosts]

[env.fleet.ssh]
user = "root"
identity = ".fleet/client_key"
known_hosts = ".fleet/known_hosts"
connect_timeout = "3s"
$vars
EOF
    echo "$n hosts up in $net.0/24: $hosts"
    echo "inventory: $dir/deployer.toml"
}

status() {
    ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$tag-h[0-9]+$" || echo "no $tag hosts"
}

case "${1:-}" in
    up) up "${2:-3}" ;;
    down) down ;;
    status) status ;;
    *) echo "usage: $0 up N | down | status" >&2; exit 2 ;;
esac
