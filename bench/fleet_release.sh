#!/usr/bin/env bash
# A rolling release on local namespace hosts (examples/fleet/hosts.sh), deployer against an
# equivalent ansible playbook, alternating: upload a 5 MB archive, unpack it into a new
# release folder, switch the `current` symlink, restart a process; batches of 3.
#
#     sudo bench/fleet_release.sh [HOSTS] [ROUNDS]     # defaults: 10 hosts, 5 rounds
#
# Needs root, openssh-server and ansible-core (ANSIBLE=, default /tmp/ansible/bin/ansible-playbook
# or ansible-playbook on PATH); DEPLOYER= the build to measure (default target/release/deployer).
set -euo pipefail

n=${1:-10}
rounds=${2:-5}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/deployer-bench-release.XXXXXX)
export FLEET_TAG=frel FLEET_NET=10.240.10 FLEET_DIR="$work"
hosts_sh="$root/examples/fleet/hosts.sh"
deployer=${DEPLOYER:-$root/target/release/deployer}
playbook_bin=${ANSIBLE:-$(command -v ansible-playbook || echo /tmp/ansible/bin/ansible-playbook)}

cleanup() {
    # The restarted processes run on the hosts: hosts.sh down stops them with the hosts.
    "$hosts_sh" down >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

[ -x "$deployer" ] || { echo "no deployer at $deployer: cargo build --release" >&2; exit 1; }
[ -x "$playbook_bin" ] || { echo "no ansible-playbook at $playbook_bin" >&2; exit 1; }
"$hosts_sh" up "$n" >/dev/null
sed -i 's/^connect_timeout = .*/connect_timeout = "10s"/' "$work/deployer.toml"
st="$work/.fleet"

# 5 MB that does not compress away.
mkdir -p "$work/build"
head -c 5000000 /dev/urandom > "$work/build/app.bin"
echo "#!/bin/sh" > "$work/build/run.sh"
tar -czf "$work/app.tar.gz" -C "$work/build" .

cat > "$work/release.rhai" <<'EOF'
import "std/releases" as releases;
let name = "";
for c in now().chars() { if c >= '0' && c <= '9' { name += c; } }
let archive = var("archive");
on(hosts(), #{ batch: 3 }, || {
    let root = host_var("root");
    let dir = releases::create(root, name);
    upload(archive, `${dir}/app.tar.gz`);
    sh(`tar -xzf ${dir}/app.tar.gz -C ${dir} && rm ${dir}/app.tar.gz`);
    releases::activate(root, name);
    sh(`cd ${root} && { if [ -f app.pid ]; then kill $(cat app.pid) 2>/dev/null; fi; setsid sleep 1000 >/dev/null 2>&1 </dev/null & echo $! > app.pid; }`);
});
EOF

{
    echo "[fleet]"
    for i in $(seq 1 "$n"); do
        ip="$FLEET_NET.$((10 + i))"
        echo "$ip root=$st/hosts/$ip/ansible"
    done
    echo "[fleet:vars]"
    echo "ansible_user=root"
    echo "ansible_ssh_private_key_file=$st/client_key"
    echo "ansible_ssh_common_args='-o UserKnownHostsFile=$st/known_hosts -o IdentitiesOnly=yes -o ControlMaster=no -o ControlPath=none'"
    echo "ansible_python_interpreter=/usr/bin/python3"
} > "$work/inventory.ini"
cat > "$work/release.yml" <<'EOF'
- hosts: fleet
  serial: 3
  gather_facts: false
  tasks:
    - name: release folder
      file: { path: "{{ root }}/releases/{{ rel }}", state: directory }
    - name: upload and unpack
      unarchive: { src: "{{ archive }}", dest: "{{ root }}/releases/{{ rel }}" }
    - name: switch current
      file: { src: "releases/{{ rel }}", dest: "{{ root }}/current", state: link, force: true }
    - name: restart
      shell: cd {{ root }} && { if [ -f app.pid ]; then kill $(cat app.pid) 2>/dev/null; fi; setsid sleep 1000 >/dev/null 2>&1 </dev/null & echo $! > app.pid; }
EOF

dep() { "$deployer" run "$work/release.rhai" --var "archive=$work/app.tar.gz"; }
ans() {
    ANSIBLE_HOST_KEY_CHECKING=False ANSIBLE_SSH_PIPELINING=True "$playbook_bin" -i "$work/inventory.ini" \
        -f 3 -e "archive=$work/app.tar.gz rel=r$(date +%s%N)" "$work/release.yml"
}
export -f dep ans
export deployer playbook_bin work
timed() {
    /usr/bin/time -f '%e %U %S' -o "$work/last.time" "$@" >"$work/last.out" 2>&1 \
        || { echo "failed: $*: $(tail -n 20 "$work/last.out")" >&2; exit 1; }
    awk '{ printf "%s %.2f\n", $1, $2 + $3 }' "$work/last.time"
}

echo "# $n hosts, batches of 3, $rounds rounds, $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
dep >/dev/null 2>&1 || { echo "deployer failed: $(dep 2>&1 | tail -n 20)" >&2; exit 1; }
ans >/dev/null 2>&1 || { echo "ansible failed: $(ans 2>&1 | tail -n 20)" >&2; exit 1; }
for r in $(seq 1 "$rounds"); do
    echo "deployer $(timed bash -c dep)"
    echo "ansible $(timed bash -c ans)"
done > "$work/runs.txt"
sed 's/^/# /' "$work/runs.txt"
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
echo "| tool | median wall (s) | min | max | median controller CPU (s) |"
echo "|---|---|---|---|---|"
for k in deployer ansible; do
    w=$(awk -v k="$k" '$1 == k { print $2 }' "$work/runs.txt")
    c=$(awk -v k="$k" '$1 == k { print $3 }' "$work/runs.txt")
    echo "| $k | $(echo "$w" | median) | $(echo "$w" | sort -n | head -n 1) | $(echo "$w" | sort -n | tail -n 1) | $(echo "$c" | median) |"
done
