#!/usr/bin/env bash
# Browser checks: time to the first visit and per further visit of deployer's browser::visit
# against one `chromium --headless --screenshot` per page, on a local page.
#   bench/browser.sh [DEPLOYER] [PAGES]     # default target/debug/deployer, 11 pages
set -euo pipefail
deployer=$(realpath "${1:-target/debug/deployer}")
pages=${2:-11}
dir=$(mktemp -d /tmp/deployer-bench-browser.XXXXXX)
trap 'kill "$server" 2>/dev/null; rm -rf "$dir"' EXIT
cd "$dir"
printf '%s' '<!doctype html><html><head><title>Hello page</title><style>header{background:#1d4ed8;color:#fff;padding:24px}</style></head><body><header><h1>Hi</h1></header><p>Sign in</p><form id="login"></form></body></html>' > page.html
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server "$port" --bind 127.0.0.1 >/dev/null 2>&1 &
server=$!
sleep 1
url="http://127.0.0.1:$port/page.html"
for n in 0 1 "$pages"; do
    echo "for i in 0..$n { browser::visit(\"$url\"); }" > "v$n.rhai"
done
sandbox=""
[ "$(id -u)" -ne 0 ] || sandbox="--no-sandbox"
wall() { /usr/bin/time -f "%e" "$@" 2>&1 >/dev/null | tail -n 1; }
for n in 0 1 "$pages"; do
    echo "deployer, $n visit(s): $(wall "$deployer" run "v$n.rhai") s"
done
start=$(date +%s.%N)
for _ in $(seq "$pages"); do
    chromium --headless $sandbox --disable-gpu --window-size=1280,800 --screenshot="$dir/shot.png" "$url" >/dev/null 2>&1
done
echo "chromium --screenshot, $pages page(s): $(echo "$(date +%s.%N) - $start" | bc) s"
