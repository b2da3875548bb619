#!/usr/bin/env bash
# sphere put / get of a file (default 1 GiB) on the embedded local grid (10 servers),
# with the home on tmpfs and on disk, each beside its limit measured in the same run:
#  - tmpfs: the raw in-memory speed of seal+hash+Reed-Solomon (caps BenchmarkPipelineLimit)
#  - disk:  dd conv=fdatasync of the 3.33x expanded bytes ten servers must write.
# Usage: scripts/bench-put-get.sh [MiB] [disk-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
MIB=${1:-1024}
DISKDIR=${2:-/var/tmp}
BIN=$(mktemp -d)/sphere
go build -o "$BIN" ./cmd/sphere
SRC=$(mktemp -p /dev/shm sphere-src.XXXXXX)
trap 'rm -rf "$SRC" /dev/shm/sphere-bench-home "$DISKDIR"/sphere-bench-home "$DISKDIR"/sphere-dd /dev/shm/sphere-out' EXIT
head -c $((MIB << 20)) /dev/urandom > "$SRC"
bytes=$((MIB << 20))
mbps() { python3 -c "import sys; print(f'{float(sys.argv[1])/1e6/float(sys.argv[2]):.0f}')" "$1" "$2"; }
t() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); python3 -c "print($e-$s)"; }

echo "machine: $(nproc) cores, $(uname -r), $(date -u +%F)"
echo "file: $MIB MiB, k=3 n=10, 1 MiB segments"
for where in /dev/shm "$DISKDIR"; do
  export SPHERE_HOME=$where/sphere-bench-home
  rm -rf "$SPHERE_HOME"; "$BIN" init >/dev/null
  sync; s=$(date +%s.%N); cap=$("$BIN" put "$SRC"); e=$(date +%s.%N); put=$(python3 -c "print($e-$s)")
  get=$(t "$BIN" get "$cap" -o /dev/shm/sphere-out)
  cmp -s "$SRC" /dev/shm/sphere-out || { echo "FAIL: bytes differ"; exit 1; }
  echo "home on $where: put $(mbps $bytes $put) MB/s, get $(mbps $bytes $get) MB/s"
  rm -rf "$SPHERE_HOME" /dev/shm/sphere-out
done
# Limits, same run.
expanded=$((bytes * 10 / 3))
dd_s=$(t dd if=/dev/zero of="$DISKDIR"/sphere-dd bs=1M count=$((expanded >> 20)) conv=fdatasync status=none)
echo "disk limit: dd conv=fdatasync of $((expanded >> 20)) MiB (3.33x expanded): $(mbps $expanded $dd_s) MB/s of share data = $(mbps $bytes $dd_s) MB/s of file"
go test ./caps -run XXX -bench '^BenchmarkPipelineLimit$' -benchtime 2s -cpu 1,2 2>/dev/null | grep -E '^Benchmark' || true
