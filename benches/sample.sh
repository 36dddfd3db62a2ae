#!/usr/bin/env bash
# Benchmark: deployer's sample() against oha and wrk, in the same run, on the same loopback
# target (nginx from Debian, one worker), at concurrency 1 and 64; then the cost of one
# in-process probe against one curl process.
#
#   benches/sample.sh [SECONDS] [ROUNDS]
#
# Needs: nginx and wrk (apt-get install nginx-light wrk), oha (cargo install oha), curl.
# Prints a Markdown table for BENCHMARKS.md. Only 127.0.0.1 is used.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
rounds=${2:-3}

for tool in nginx wrk oha curl /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 2; }
done
cargo build --release --quiet
bin=$PWD/target/release/deployer

dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$dir/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 60s;
    server { listen 127.0.0.1:$port; location / { return 200 "ok\n"; } }
}
NGINX
nginx -c "$dir/nginx.conf" -p "$dir" &
ngx=$!
trap 'kill $ngx 2>/dev/null; rm -rf "$dir"' EXIT
url="http://127.0.0.1:$port/"
for _ in $(seq 50); do curl -s -o /dev/null "$url" && break; sleep 0.1; done

# cpu SECONDS-OF-USER+SYSTEM for a command; its stdout goes to $dir/out.
cpu() { /usr/bin/time -f "%U %S" -o "$dir/time" "$@" > "$dir/out" 2>/dev/null; awk '{ printf "%.2f", $1 + $2 }' "$dir/time"; }

cat > "$dir/sample.rhai" <<'RHAI'
let m = sample(var("url"), #{ duration: var("secs") + "s", concurrency: var("c", 1) });
print(`${m.rps}`);
RHAI

echo "| tool | concurrency | round | requests/s | CPU s |"
echo "|---|---|---|---|---|"
for c in 1 64; do
    for r in $(seq "$rounds"); do
        t=$(cpu oha -z "${secs}s" -c "$c" --no-tui --output-format json "$url")
        rps=$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["summary"]["requestsPerSec"]))' "$dir/out")
        echo "| oha | $c | $r | $rps | $t |"
        t=$(cpu wrk -t1 -c "$c" -d "${secs}s" "$url")
        rps=$(awk '/Requests\/sec/ { printf "%d", $2 }' "$dir/out")
        echo "| wrk | $c | $r | $rps | $t |"
        t=$(cpu "$bin" run "$dir/sample.rhai" -q --var "url=$url" --var "secs=$secs" --var "c=$c")
        rps=$(awk 'NR==1 { printf "%d", $1 }' "$dir/out")
        echo "| deployer sample() | $c | $r | $rps | $t |"
    done
done

# One probe: CPU per request of sample() (20,000 requests, minus an empty run's start-up)
# against CPU per `curl` process (200 runs).
cat > "$dir/probe.rhai" <<'RHAI'
sample(var("url"), #{ requests: 20000 });
RHAI
echo 'print(1);' > "$dir/empty.rhai"
base=$(cpu "$bin" run "$dir/empty.rhai" -q)
t=$(cpu "$bin" run "$dir/probe.rhai" -q --var "url=$url")
per_sample=$(python3 -c "print(f'{max(0.0, ($t - $base)) / 20000 * 1e6:.1f}')")
cat > "$dir/curl.sh" <<SH
for i in \$(seq 200); do curl -s -o /dev/null "$url"; done
SH
t=$(cpu sh "$dir/curl.sh")
per_curl=$(python3 -c "print(f'{$t / 200 * 1e6:.0f}')")
echo
echo "| one probe | CPU µs |"
echo "|---|---|"
echo "| deployer sample(), in process | $per_sample |"
echo "| one curl process | $per_curl |"
