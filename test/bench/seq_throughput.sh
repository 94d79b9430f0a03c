#!/usr/bin/env bash
# Sequential write/read throughput of frugalfs next to a plain FUSE
# passthrough mount of the same disk (libfuse's passthrough_ll example, built
# here) and the disk itself. Prints MB/s per system, medians of RUNS runs.
#
#   usage: test/bench/seq_throughput.sh [FRUGALFS_BINARY] [SIZE_MIB] [RUNS]
# Needs root and /dev/fuse. Not part of the test suite.
set -euo pipefail
FRUGALFS=${1:-build/tools/frugalfs}
SIZE_MIB=${2:-1024}
RUNS=${3:-3}
FRUGALFS=$(readlink -f "$FRUGALFS")
WORK=$(mktemp -d /var/tmp/frugalfs-bench.XXXXXX)
cleanup() {
  fusermount3 -u "$WORK/mnt" 2>/dev/null || true
  fusermount3 -u "$WORK/pt" 2>/dev/null || true
  sleep 1
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK"/{mnt,pt,ptsrc,disk}

EXAMPLE=/usr/share/doc/libfuse3-dev/examples/passthrough_ll.c
[ -f "$EXAMPLE" ] || { echo "need $EXAMPLE (package libfuse3-dev)" >&2; exit 1; }
cc -O2 -o "$WORK/passthrough_ll" "$EXAMPLE" $(pkg-config --cflags --libs fuse3) -lpthread

head -c "${SIZE_MIB}M" /dev/urandom > "$WORK/random.bin"
# Compressible input: text made unique per run so dedup cannot help.
text_input() {
  local run=$1
  find /usr/include /usr/share/doc -type f -name '*.h' -o -type f -name 'copyright' 2>/dev/null |
    head -n 20000 | xargs cat 2>/dev/null | awk -v r="$run" '{print r ":" NR ": " $0}' |
    head -c "${SIZE_MIB}M"
}

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
mbps() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f", b / 1048576 / s }'; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
timed() { local t0 t1; t0=$(date +%s.%N); "$@"; t1=$(date +%s.%N); awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}'; }

write_file() { dd if="$1" of="$2" bs=1M conv=fsync status=none; }
read_file() { cat "$1" > /dev/null; }

declare -A results
run_system() {  # name, setup-fn, dir-fn, teardown-fn
  local name=$1 dir=$2
  for run in $(seq "$RUNS"); do
    text_input "$run" > "$WORK/text.bin"
    local bytes_text; bytes_text=$(stat -c %s "$WORK/text.bin")
    "setup_$name"
    local t; t=$(timed write_file "$WORK/random.bin" "$dir/random.bin")
    results[$name,write_random]+="$(mbps $((SIZE_MIB * 1048576)) "$t") "
    t=$(timed write_file "$WORK/text.bin" "$dir/text.bin")
    results[$name,write_text]+="$(mbps "$bytes_text" "$t") "
    "remount_$name"; drop_caches
    t=$(timed read_file "$dir/random.bin")
    results[$name,read_cold]+="$(mbps $((SIZE_MIB * 1048576)) "$t") "
    "teardown_$name"
  done
}

setup_disk() { rm -rf "$WORK/disk"/*; }
remount_disk() { :; }
teardown_disk() { rm -rf "$WORK/disk"/*; }

setup_passthrough() { rm -rf "$WORK/ptsrc"/*; "$WORK/passthrough_ll" -o source="$WORK/ptsrc" "$WORK/pt"; }
remount_passthrough() { fusermount3 -u "$WORK/pt"; sleep 0.5; "$WORK/passthrough_ll" -o source="$WORK/ptsrc" "$WORK/pt"; }
teardown_passthrough() { fusermount3 -u "$WORK/pt"; rm -rf "$WORK/ptsrc"/*; }

frugal_wait_exit() { while pgrep -f "frugalfs mount $WORK/meta" >/dev/null; do sleep 0.2; done; }
setup_frugalfs() {
  rm -rf "$WORK/meta" "$WORK"/vol?
  "$FRUGALFS" mkfs "$WORK/meta" "$WORK"/vol{0,1,2,3} >/dev/null
  "$FRUGALFS" mount "$WORK/meta" "$WORK/mnt"
}
remount_frugalfs() { fusermount3 -u "$WORK/mnt"; frugal_wait_exit; "$FRUGALFS" mount "$WORK/meta" "$WORK/mnt"; }
teardown_frugalfs() { fusermount3 -u "$WORK/mnt"; frugal_wait_exit; rm -rf "$WORK/meta" "$WORK"/vol?; }

run_system disk "$WORK/disk"
run_system passthrough "$WORK/pt"
run_system frugalfs "$WORK/mnt"

printf '%-14s %10s %12s %10s %14s\n' workload disk passthrough frugalfs "frugalfs/pt"
for w in write_random write_text read_cold; do
  d=$(echo ${results[disk,$w]} | tr ' ' '\n' | median)
  p=$(echo ${results[passthrough,$w]} | tr ' ' '\n' | median)
  f=$(echo ${results[frugalfs,$w]} | tr ' ' '\n' | median)
  printf '%-14s %10s %12s %10s %14s\n' "$w" "$d" "$p" "$f" "$(awk -v f="$f" -v p="$p" 'BEGIN{printf "%.2f", f/p}')"
done
echo "(MB/s, median of $RUNS runs of $SIZE_MIB MiB; $(nproc) cores; $(uname -r))"
