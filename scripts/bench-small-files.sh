#!/usr/bin/env bash
# Create N × 4 KiB files through `sphere mount` and through gocryptfs on the
# same backing store (tmpfs or disk), in one run, alternating which goes
# first each round. Usage: scripts/bench-small-files.sh [BASE_DIR] [N] [ROUNDS]
#   BASE_DIR: /dev/shm (tmpfs, default) or a directory on disk, e.g. /var/tmp
# Prints per round: sphere seconds, gocryptfs seconds, ratio; then what was
# still waiting for the grid when the creates finished, and the unmount time.
set -u
BASE=${1:-/dev/shm}; N=${2:-10000}; ROUNDS=${3:-2}
BIN=$(mktemp -d)/sphere
go build -o "$BIN" ./cmd/sphere || exit 1
command -v gocryptfs >/dev/null || { echo "needs gocryptfs (apt-get install gocryptfs)"; exit 1; }
S=$(mktemp -d -p "$BASE"); pid=
cleanup() { for m in "$S/m" "$S/gm"; do mountpoint -q "$m" && { fusermount3 -u "$m" 2>/dev/null || umount -l "$m"; }; done
  [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$S"; }
trap cleanup EXIT
export SPHERE_HOME=$S/home; "$BIN" init >/dev/null
mkdir -p "$S/m" "$S/gc" "$S/gm"
"$BIN" mount "$S/m" >"$S/mount.log" 2>&1 & pid=$!
for i in $(seq 50); do mountpoint -q "$S/m" && break; sleep 0.2; done
echo pw > "$S/pw"; gocryptfs -init -q -passfile "$S/pw" -scryptn 10 "$S/gc" >/dev/null 2>&1
gocryptfs -q -nosyslog -passfile "$S/pw" "$S/gc" "$S/gm"
create='import os,sys,time
d=sys.argv[1]; n=int(sys.argv[2]); os.makedirs(d); b=os.urandom(4096); t=time.time()
for i in range(n):
    with open(os.path.join(d,"f%05d"%i),"wb") as f: f.write(b)
print("%.2f"%(time.time()-t))'
for r in $(seq "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then
    ts=$(python3 -c "$create" "$S/m/r$r" "$N"); tg=$(python3 -c "$create" "$S/gm/r$r" "$N")
  else
    tg=$(python3 -c "$create" "$S/gm/r$r" "$N"); ts=$(python3 -c "$create" "$S/m/r$r" "$N")
  fi
  echo "round $r on $BASE: $N × 4 KiB: sphere ${ts}s gocryptfs ${tg}s ratio $(awk -v a="$ts" -v b="$tg" 'BEGIN{printf "%.2f", a/b}') | $("$BIN" status 2>/dev/null | grep Pending || echo 'Pending: nothing')"
done
t0=$(date +%s.%N); "$BIN" unmount "$S/m" >/dev/null 2>&1; t1=$(date +%s.%N)
echo "unmount (waits for the upload): $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')s; loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
