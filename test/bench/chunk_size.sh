#!/usr/bin/env bash
# Chooses the chunk size by measurement: for each average chunk size, makes a
# filesystem, writes two versions of a source tree as tarballs (the second
# with ~5% of its files edited, so content shifts inside the tarball) and
# reports throughput, the dedup ratio on the second version, the stored bytes
# and the metadata size.
#
#   usage: test/bench/chunk_size.sh [FRUGALFS_BINARY] [TREE] [SIZES...]
# Needs root and /dev/fuse. Not part of the test suite.
set -euo pipefail
FRUGALFS=$(readlink -f "${1:-build/tools/frugalfs}")
TREE=${2:-/usr/include}
shift 2 2>/dev/null || true
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(16K 32K 64K 128K 256K)
WORK=$(mktemp -d /var/tmp/frugalfs-chunks.XXXXXX)
cleanup() { fusermount3 -u "$WORK/mnt" 2>/dev/null || true; sleep 1; rm -rf "$WORK"; }
trap cleanup EXIT
mkdir -p "$WORK/mnt" "$WORK/v2"

tar -C "$(dirname "$TREE")" -cf "$WORK/v1.tar" "$(basename "$TREE")"
cp -a "$TREE" "$WORK/v2/tree"
# Edit about 5% of the files: insert a line near the top.
find "$WORK/v2/tree" -type f | awk 'NR % 20 == 0' | while read -r f; do
  sed -i '1i /* edited for the chunk size benchmark */' "$f"
done
tar -C "$WORK/v2" -cf "$WORK/v2.tar" tree
logical=$(stat -c %s "$WORK/v1.tar")

wait_exit() { while pgrep -f "frugalfs mount $WORK/meta" >/dev/null; do sleep 0.2; done; }
used() { du -sb "$WORK"/vol? | awk '{s += $1} END {print s}'; }
secs() { local t0; t0=$(date +%s.%N); "$@"; awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{print b-a}'; }

printf '%-6s %9s %9s %12s %12s %11s %9s\n' avg "v1 MB/s" "v2 MB/s" "v2 new KiB" "dedup v2" "stored/log" "meta KiB"
for size in "${SIZES[@]}"; do
  rm -rf "$WORK/meta" "$WORK"/vol?
  "$FRUGALFS" mkfs --chunk-avg "$size" "$WORK/meta" "$WORK"/vol{0,1,2,3} >/dev/null
  "$FRUGALFS" mount "$WORK/meta" "$WORK/mnt"
  t1=$(secs sh -c "cat '$WORK/v1.tar' > '$WORK/mnt/v1.tar' && sync '$WORK/mnt/v1.tar'")
  fusermount3 -u "$WORK/mnt"; wait_exit
  after1=$(used)
  "$FRUGALFS" mount "$WORK/meta" "$WORK/mnt"
  t2=$(secs sh -c "cat '$WORK/v2.tar' > '$WORK/mnt/v2.tar' && sync '$WORK/mnt/v2.tar'")
  fusermount3 -u "$WORK/mnt"; wait_exit
  after2=$(used)
  meta=$(du -sk --exclude='*.log' --exclude='LOG*' "$WORK/meta" | cut -f1)
  awk -v s="$size" -v t1="$t1" -v t2="$t2" -v l="$logical" -v a1="$after1" -v a2="$after2" -v m="$meta" \
    'BEGIN { printf "%-6s %9.0f %9.0f %12.0f %11.1f%% %10.1f%% %9d\n", s, l/1048576/t1, l/1048576/t2,
             (a2-a1)/1024, 100*(1-(a2-a1)/a1), 100*(a1/2)/l, m }'
done
echo "(tree $TREE, tarball $((logical / 1048576)) MiB; 'dedup v2': share of v2 not stored again;"
echo " 'stored/log': bytes before 2+2 coding per logical byte of v1)"
