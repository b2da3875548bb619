#!/usr/bin/env bash
# Web gateway figures for docs/BENCHMARKS.md, end to end with the real
# binary: `sphere up`, a real `git push` of a 10,000-file repository through
# git-remote-sphere, time to the first byte of a 100 MB site file (curl),
# and small requests per second from a Go load generator on loopback.
# Usage: scripts/bench-web.sh [MB of the large file, default 100]
set -euo pipefail
cd "$(dirname "$0")/.."
MB=${1:-100}
T=$(mktemp -d); pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$T"' EXIT
go build -o "$T/bin/sphere" ./cmd/sphere
go build -o "$T/bin/webload" ./scripts/webload
export SPHERE_HOME=$T/home PATH=$T/bin:$PATH SPHERE_GATEWAY=127.0.0.1:0
sphere up >"$T/up.log" 2>&1 & pid=$!
for _ in $(seq 100); do grep -q 'Gateway: http' "$T/up.log" && break; sleep 0.1; done
port=$(grep -oE 'http://localhost:[0-9]+' "$T/up.log" | head -n1); port=${port##*:}
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
mkdir "$T/site" && cd "$T/site"
git init -q -b main && git config user.email b@example.org && git config user.name b
echo '<h1>bench</h1>' > index.html && echo 'hello' > small.txt && head -c 2048 /dev/urandom | base64 > small2k.txt
git add -A && git commit -qm one
out=$(sphere publish .)
url=$(echo "$out" | grep -oE 'http://[a-z0-9]+\.localhost:[0-9]+' | tail -n1)
host=${url#http://}; host=${host%%:*}
# 10,000 files, ~200-1000 bytes each, in 100 folders; then one real git push.
python3 - <<'PY'
import os, random
random.seed(1)
for i in range(10000):
    d = "d%02d" % (i // 100)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%05d.txt" % i), "w") as f:
        f.write("".join(random.choice("abcdefghij\n") for _ in range(200 + i % 800)))
PY
git add -A && git commit -qm 10k
s=$(date +%s.%N); git push -q sphere main; e=$(date +%s.%N)
echo "git push of 10,000 files: $(awk -v a=$s -v b=$e 'BEGIN{printf "%.1f", b-a}') s"
head -c $((MB<<20)) /dev/urandom > big.bin && git add big.bin && git commit -qm big
s=$(date +%s.%N); git push -q sphere main; e=$(date +%s.%N)
echo "git push of a $MB MiB file: $(awk -v a=$s -v b=$e 'BEGIN{printf "%.1f", b-a}') s"
sleep 1.2   # past the gateway's 1 s refs cache
for i in 1 2 3; do
  curl -s -o /dev/null --resolve "$host:$port:127.0.0.1" -r $(( (i*7 % MB) << 20 ))- \
    -w "first byte of $MB MiB file (segment not read before): %{time_starttransfer} s\n" "$url/big.bin"
done
webload -c 16 -d 5s "$url/small2k.txt"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
