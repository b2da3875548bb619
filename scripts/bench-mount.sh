#!/usr/bin/env bash
# bench-mount.sh: Sphere's FUSE mount on the embedded local grid against gocryptfs, on the same
# backing store (tmpfs, then disk), in one run. Prints a Markdown table; each figure is also given as
# a ratio to gocryptfs's.
#
#   scripts/bench-mount.sh [-s SIZE_MIB] [-n FILES] [-b tmpfs|disk|both]
#
# Needs: root (drop_caches, FUSE), gocryptfs, python3, go. Measures, per file system:
#   write  dd if=<random file in page cache> of=MNT/big bs=1M conv=fsync           MB/s
#   read   after unmount + mount + drop_caches: dd if=MNT/big of=/dev/null bs=1M      MB/s (cold)
#   create 10,000 files of 4 KiB in one directory (one process), then sync           s
#   ls     after unmount + mount + drop_caches: ls -lR MNT/many                       s (cold)
#   add1   one more file (create, write 4 KiB, fsync) in the 10,000-entry directory   ms (median of 5)
set -euo pipefail

SIZE_MIB=1024
FILES=10000
BACKINGS=both
while getopts "s:n:b:" o; do
  case $o in
    s) SIZE_MIB=$OPTARG ;;
    n) FILES=$OPTARG ;;
    b) BACKINGS=$OPTARG ;;
    *) echo "usage: $0 [-s SIZE_MIB] [-n FILES] [-b tmpfs|disk|both]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "bench-mount: run as root (drop_caches, FUSE)" >&2; exit 2; }
for t in gocryptfs python3 go mountpoint; do
  command -v $t >/dev/null || { echo "bench-mount: $t is missing (apt-get install gocryptfs python3)" >&2; exit 2; }
done
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/bench-mount.XXXXXX)
BIN=$WORK/sphere
(cd "$ROOT" && go build -o "$BIN" ./cmd/sphere)

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", b-a}'; }
mbps() { awk -v n="$1" -v s="$2" 'BEGIN{printf "%.0f", n/1e6/(s>0?s:1e-9)}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b+0==0) print "n/a"; else printf "%.2f", a/b }'; }
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
waitmount() { for _ in $(seq 100); do mountpoint -q "$1" && return 0; sleep 0.1; done; echo "not mounted: $1" >&2; return 1; }

MOUNTS=(); PIDS=(); TMPFS=()
cleanup() {
  for m in "${MOUNTS[@]}"; do mountpoint -q "$m" && { fusermount3 -u "$m" 2>/dev/null || umount -l "$m"; }; done
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for t in "${TMPFS[@]}"; do umount -l "$t" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# The source of the big write: random bytes, read from the page cache during the measurement.
SRC=/dev/shm/bench-mount-src.$$
head -c $((SIZE_MIB << 20)) /dev/urandom > "$SRC"
trap 'rm -f "$SRC"; cleanup' EXIT
BYTES=$((SIZE_MIB << 20))

# fs_up NAME BACKING MNT: mount file system NAME whose data lives under BACKING at MNT.
fs_up() {
  local name=$1 back=$2 mnt=$3
  case $name in
    sphere)
      SPHERE_HOME=$back/home TMPDIR=$back/tmp "$BIN" mount "$mnt" >"$back/mount.log" 2>&1 &
      PIDS+=($!); echo $! > "$back/mount.pid" ;;
    gocryptfs)
      gocryptfs -q -nosyslog -extpass "echo benchpass" "$back/cipher" "$mnt" ;;
  esac
  MOUNTS+=("$mnt")
  waitmount "$mnt"
}
fs_down() {
  local name=$1 back=$2 mnt=$3
  case $name in
    sphere) SPHERE_HOME=$back/home "$BIN" unmount "$mnt" >/dev/null 2>&1 || fusermount3 -u "$mnt"
            local pid; pid=$(cat "$back/mount.pid")
            for _ in $(seq 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done ;;
    gocryptfs) fusermount3 -u "$mnt" ;;
  esac
}
fs_init() {
  local name=$1 back=$2
  mkdir -p "$back/tmp"
  case $name in
    sphere) SPHERE_HOME=$back/home "$BIN" init >/dev/null ;;
    gocryptfs) mkdir -p "$back/cipher"; gocryptfs -q -init -extpass "echo benchpass" -scryptn 10 "$back/cipher" >/dev/null ;;
  esac
}

# bench NAME BACKING_DIR: sets R_write R_read R_create R_ls R_add1
bench() {
  local name=$1 back=$2 mnt=$WORK/mnt-$name-$RANDOM t0 t1
  mkdir -p "$mnt"
  fs_init "$name" "$back"
  fs_up "$name" "$back" "$mnt"
  cat "$SRC" > /dev/null
  t0=$(now); dd if="$SRC" of="$mnt/big" bs=1M conv=fsync status=none; t1=$(now)
  R_write=$(mbps $BYTES "$(secs "$t0" "$t1")")
  fs_down "$name" "$back" "$mnt"; drop; fs_up "$name" "$back" "$mnt"
  t0=$(now); dd if="$mnt/big" of=/dev/null bs=1M status=none; t1=$(now)
  R_read=$(mbps $BYTES "$(secs "$t0" "$t1")")
  rm -f "$mnt/big"; sync

  mkdir "$mnt/many"
  t0=$(now)
  python3 - "$mnt/many" "$FILES" <<'PY'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
buf = os.urandom(4096)
for i in range(n):
    with open(os.path.join(d, "f%05d" % i), "wb") as f:
        f.write(buf[i % 64:] + buf[:i % 64])
PY
  sync; t1=$(now)
  R_create=$(secs "$t0" "$t1")
  fs_down "$name" "$back" "$mnt"; drop; fs_up "$name" "$back" "$mnt"
  t0=$(now); ls -lR "$mnt/many" > "$WORK/ls.out"; t1=$(now)
  R_ls=$(secs "$t0" "$t1")
  local lines; lines=$(grep -c '^-' "$WORK/ls.out" || true)
  [ "$lines" = "$FILES" ] || { echo "bench-mount: $name ls -lR shows $lines files, want $FILES" >&2; exit 1; }
  R_add1=$(python3 - "$mnt/many" <<'PY'
import os, sys, time, statistics
d = sys.argv[1]
ts = []
for i in range(5):
    t0 = time.perf_counter()
    fd = os.open(os.path.join(d, "added-%d" % i), os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644)
    os.write(fd, b"x" * 4096)
    os.fsync(fd)
    os.close(fd)
    ts.append((time.perf_counter() - t0) * 1000)
print("%.1f" % statistics.median(ts))
PY
)
  fs_down "$name" "$back" "$mnt"
}

echo "# bench-mount $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, ${SIZE_MIB} MiB, ${FILES} files, $(uname -r), $(gocryptfs -version | head -1)"
echo
echo "| backing | fs | write MB/s | read MB/s (cold) | create ${FILES}×4 KiB s | ls -lR s (cold) | add 1 to ${FILES} ms |"
echo "|---|---|---|---|---|---|---|"
case $BACKINGS in both) LIST="tmpfs disk" ;; *) LIST=$BACKINGS ;; esac
for backing in $LIST; do
  declare -A G S
  for name in gocryptfs sphere; do
    if [ "$backing" = tmpfs ]; then
      back=$WORK/tmpfs-$name; mkdir -p "$back"; mount -t tmpfs -o size=12g tmpfs "$back"; TMPFS+=("$back")
    else
      back=$WORK/disk-$name; mkdir -p "$back"
    fi
    bench "$name" "$back"
    if [ $name = gocryptfs ]; then
      G=([w]=$R_write [r]=$R_read [c]=$R_create [l]=$R_ls [a]=$R_add1)
      echo "| $backing | gocryptfs | $R_write | $R_read | $R_create | $R_ls | $R_add1 |"
    else
      S=([w]=$R_write [r]=$R_read [c]=$R_create [l]=$R_ls [a]=$R_add1)
      echo "| $backing | sphere | $R_write | $R_read | $R_create | $R_ls | $R_add1 |"
      echo "| $backing | **sphere ÷ gocryptfs** | $(ratio "${S[w]}" "${G[w]}")× | $(ratio "${S[r]}" "${G[r]}")× | $(ratio "${S[c]}" "${G[c]}")× | $(ratio "${S[l]}" "${G[l]}")× | $(ratio "${S[a]}" "${G[a]}")× |"
    fi
    if [ "$backing" = tmpfs ]; then umount -l "$back"; fi
    rm -rf "$back"
  done
done
echo
echo "Targets (issue 3): write ≥ 0.5×, read ≥ 0.7× gocryptfs; create and ls -lR ≤ 2× gocryptfs's time; add 1 ≤ 50 ms."
