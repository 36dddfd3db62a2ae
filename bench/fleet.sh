#!/usr/bin/env bash
# Fan-out over SSH on local namespace hosts (examples/fleet/hosts.sh): wall time to run
# `true` on every host with deployer `on(hosts(), #{ batch: N }, ...)`, parallel-ssh
# (Debian's pssh), `ansible all -m command -a true -f N` (PyPI's ansible-core) and a bash
# loop of ssh, alternating tool by tool in each round; then the cost of each further
# command on one host (1 vs 21 commands in one on(): the difference / 20), and the
# controller's CPU (user + system of the whole process tree) per host and command.
#
#     sudo bench/fleet.sh [HOSTS] [ROUNDS]        # defaults: 10 hosts, 10 rounds
#
# Needs root (namespaces), openssh-server, pssh and ansible-core:
#     apt-get install pssh; python3 -m venv /tmp/ansible && /tmp/ansible/bin/pip install ansible-core
# Environment: DEPLOYER (default target/release/deployer), ANSIBLE (default: ansible on
# PATH, else /tmp/ansible/bin/ansible), PSSH (parallel-ssh or pssh). Tools that are
# missing are reported and skipped. Every tool opens fresh connections each run (deployer
# opens one master per host per run and closes it at the end; ansible's ControlPersist is
# turned off so that it does not reuse the previous round's connections).
set -euo pipefail

n=${1:-10}
rounds=${2:-10}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/deployer-bench-fleet.XXXXXX)
export FLEET_TAG=fbench FLEET_NET=10.240.9 FLEET_DIR="$work"
hosts_sh="$root/examples/fleet/hosts.sh"
deployer=${DEPLOYER:-$root/target/release/deployer}
ansible=${ANSIBLE:-$(command -v ansible || echo /tmp/ansible/bin/ansible)}
pssh=${PSSH:-$(command -v parallel-ssh || command -v pssh || echo "")}

cleanup() { "$hosts_sh" down >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT INT TERM

[ -x "$deployer" ] || { echo "no deployer at $deployer: cargo build --release" >&2; exit 1; }
"$hosts_sh" up "$n" >/dev/null
st="$work/.fleet"
# A shared, loaded machine can take more than hosts.sh's 3 s to connect.
sed -i 's/^connect_timeout = .*/connect_timeout = "10s"/' "$work/deployer.toml"
ips=$(seq 1 "$n" | while read -r i; do echo "$FLEET_NET.$((10 + i))"; done)
printf '%s\n' $ips > "$work/hosts.txt"
sshopts=(-i "$st/client_key" -o IdentitiesOnly=yes -o UserKnownHostsFile="$st/known_hosts"
         -o BatchMode=yes -o ConnectTimeout=10 -l root)

cat > "$work/fanout.rhai" <<EOF
on(hosts(), #{ batch: $n }, || exec(["true"]));
EOF
cat > "$work/one.rhai" <<'EOF'
on([hosts()[0]], || exec(["true"]));
EOF
cat > "$work/twentyone.rhai" <<'EOF'
on([hosts()[0]], || { for i in 0..21 { exec(["true"]); } });
EOF
{
    echo "[fleet]"
    printf '%s\n' $ips
    echo "[fleet:vars]"
    echo "ansible_user=root"
    echo "ansible_ssh_private_key_file=$st/client_key"
    echo "ansible_ssh_common_args='-o UserKnownHostsFile=$st/known_hosts -o IdentitiesOnly=yes -o ControlMaster=no -o ControlPath=none'"
    echo "ansible_python_interpreter=/usr/bin/python3"
} > "$work/inventory.ini"

# One timed run: prints "wall_seconds cpu_seconds" (CPU of the command and its children,
# as the kernel accounts them once they are reaped).
timed() {
    /usr/bin/time -f '%e %U %S' -o "$work/last.time" "$@" >/dev/null 2>&1 || echo "failed: $*" >&2
    awk '{ printf "%s %.2f\n", $1, $2 + $3 }' "$work/last.time"
}

declare -A cmds
cmds[deployer]="$deployer run $work/fanout.rhai"
cmds[bash-loop]="bash -c 'for h in \$(cat $work/hosts.txt); do ssh ${sshopts[*]} \$h true || exit 1; done'"
order=(deployer bash-loop)
if [ -n "$pssh" ]; then
    cmds[parallel-ssh]="$pssh -h $work/hosts.txt -p $n -x '${sshopts[*]}' true"
    order+=(parallel-ssh)
else
    echo "parallel-ssh not found (apt-get install pssh): skipped" >&2
fi
if [ -x "$ansible" ]; then
    cmds[ansible]="ANSIBLE_HOST_KEY_CHECKING=False ANSIBLE_SSH_PIPELINING=True $ansible all -i $work/inventory.ini -m command -a true -f $n"
    order+=(ansible)
else
    echo "ansible not found ($ansible): skipped" >&2
fi
cmds[one-command]="$deployer run $work/one.rhai"
cmds[21-commands]="$deployer run $work/twentyone.rhai"
order+=(one-command 21-commands)

# Every tool works once before timing (and the runs fail loudly if one does not).
for k in "${order[@]}"; do
    (cd "$work" && eval "${cmds[$k]}") >/dev/null 2>"$work/check.err" \
        || { echo "$k failed: $(tail -n 20 "$work/check.err")" >&2; exit 1; }
done

echo "# $n hosts, $rounds rounds, $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
echo "# tool wall_s cpu_s (one line per run; tools alternate within each round)"
for r in $(seq 1 "$rounds"); do
    for k in "${order[@]}"; do
        echo "$k $(cd "$work" && timed bash -c "${cmds[$k]}")"
    done
done > "$work/runs.txt"
cat "$work/runs.txt" | sed 's/^/# /'

median() { sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
echo
echo "| tool | median wall (s) | min | max | median controller CPU (s) |"
echo "|---|---|---|---|---|"
for k in "${order[@]}"; do
    w=$(awk -v k="$k" '$1 == k { print $2 }' "$work/runs.txt")
    c=$(awk -v k="$k" '$1 == k { print $3 }' "$work/runs.txt")
    echo "| $k | $(echo "$w" | median) | $(echo "$w" | sort -n | head -n 1) | $(echo "$w" | sort -n | tail -n 1) | $(echo "$c" | median) |"
done
one=$(awk '$1 == "one-command" { print $2 }' "$work/runs.txt" | median)
many=$(awk '$1 == "21-commands" { print $2 }' "$work/runs.txt" | median)
echo
echo "each further command on one host: ($many - $one) / 20 = $(awk -v a="$many" -v b="$one" 'BEGIN { printf "%.1f ms", (a - b) / 20 * 1000 }')"
