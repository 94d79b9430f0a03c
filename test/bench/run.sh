#!/usr/bin/env bash
# The frugalfs benchmark: frugalfs next to the FUSE limit and a peer, on the
# same disk, in one run. Not part of the test suite (see README.md).
#
#   sudo test/bench/run.sh [--size MIB] [--runs N] [--fio-ios N] [--files N] [--no-zfs] [--out FILE]
#
# Systems, each on a fresh directory under /var/tmp:
#   disk         the directory itself (the disk limit)
#   passthrough  libfuse's passthrough_ll example over a directory (the FUSE limit)
#   zfs-fuse     raidz2 over four file vdevs, dedup=on, compression=on (the peer)
#   frugalfs     four local volumes, default settings
# Workloads (per run, in this order):
#   write_random  SIZE MiB of unique random data, fsync at the end      MB/s
#   write_dup     the same data again under another name (dedup case)  MB/s
#   write_text    SIZE MiB of unique text (compressible)               MB/s
#   read_cold     the random file, after a remount and drop_caches     MB/s
#   cp_tree       cp -a of /usr/include and /usr/share/doc (~15k files) files/s
#   rm_tree       rm -rf of that copy                                  files/s
#   fio_randwrite N 4 KiB random overwrites in a 256 MiB file (fio, psync),
#                 timed with the fsync at the end                       IOPS
#   meta_storm    create, stat and unlink FILES empty files            ops/s
# Prints one table of medians with the ratios of frugalfs to the others,
# frugalfs's peak RSS and physical bytes per logical byte (and zfs's), and
# writes it as Markdown to --out (default test/bench/results.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

SIZE_MIB=1024
RUNS=3
FIO_IOS=16384
FILES=5000
WITH_ZFS=1
OUT=$ROOT/test/bench/results.md
usage() { sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --size) SIZE_MIB=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --fio-ios) FIO_IOS=$2; shift 2 ;;
    --files) FILES=$2; shift 2 ;;
    --no-zfs) WITH_ZFS=0; shift ;;
    --out) OUT=$(readlink -f "$2"); shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
for n in "$SIZE_MIB" "$RUNS" "$FIO_IOS" "$FILES"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: '$n' is not a positive number" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "run.sh: run it as root (it mounts and drops caches)" >&2; exit 1; }

T_START=$SECONDS
log() { echo "[bench +$((SECONDS - T_START))s] $*" >&2; }

# --- build: frugalfs, the passthrough example, the storm tool
source tools/deps.sh
install_packages >&2
BENCH_PACKAGES=(fio)
[ "$WITH_ZFS" = 1 ] && BENCH_PACKAGES+=(zfs-fuse)
for p in "${BENCH_PACKAGES[@]}"; do
  dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed' ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y "$p" >&2
done
[ -f build/build.ninja ] || meson setup build >&2
ninja -C build >&2
FRUGALFS=$ROOT/build/tools/frugalfs

WORK=$(mktemp -d /var/tmp/frugalfs-bench.XXXXXX)
ZFS_PID=$WORK/zfs-fuse.pid
cleanup() {
  set +e
  cd /
  for m in "$WORK/mnt" "$WORK/pt"; do mountpoint -q "$m" && fusermount3 -u "$m"; done
  if [ -f "$ZFS_PID" ]; then
    zpool destroy -f frugalbench 2>/dev/null
    kill "$(cat "$ZFS_PID")" 2>/dev/null
    sleep 1
  fi
  rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK"/{mnt,pt,ptsrc,disk,zfs,storm}

EXAMPLE=/usr/share/doc/libfuse3-dev/examples/passthrough_ll.c
[ -f "$EXAMPLE" ] || { echo "run.sh: need $EXAMPLE (package libfuse3-dev)" >&2; exit 1; }
cc -O2 -o "$WORK/passthrough_ll" "$EXAMPLE" $(pkg-config --cflags --libs fuse3) -lpthread
c++ -O2 -std=c++20 -o "$WORK/meta_storm" test/bench/meta_storm.cc

# --- inputs, on the same disk
log "preparing inputs in $WORK"
head -c "${SIZE_MIB}M" /dev/urandom > "$WORK/random.bin"
mkdir -p "$WORK/tree"
cp -a /usr/include "$WORK/tree/include"
# (libfuse's passthrough_ll holds a descriptor per inode it has seen and this
# machine allows 20,000 per process, so the tree stays below that.)
cp -a /usr/share/doc "$WORK/tree/doc"
TREE_FILES=$(find "$WORK/tree" | wc -l)
TREE_BYTES=$(du -sb --apparent-size "$WORK/tree" | cut -f1)
# Unique compressible text: source headers, every line numbered with the run.
text_input() (
  set +o pipefail  # head stops the pipeline early on purpose
  find /usr/include /usr/share/doc -type f \( -name '*.h' -o -name 'copyright' \) 2>/dev/null |
    head -n 30000 | xargs cat 2>/dev/null | awk -v r="$1" '{print r ":" NR ": " $0}' |
    head -c "${SIZE_MIB}M"
)

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
now() { date +%s.%N; }
rate() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.0f", n / (b - a) }'; }
median() { tr ' ' '\n' | awk 'NF' | sort -n | awk '{a[NR]=$1} END { if (NR) print a[int((NR+1)/2)]; else print "-" }'; }

# --- the systems: setup_X, remount_X (cold caches), teardown_X, and dir_X
dir_disk=$WORK/disk
setup_disk() { :; }
remount_disk() { :; }
teardown_disk() { rm -rf "${WORK:?}/disk"/*; }

dir_passthrough=$WORK/pt
setup_passthrough() { "$WORK/passthrough_ll" -o source="$WORK/ptsrc" "$WORK/pt"; }
remount_passthrough() { fusermount3 -u "$WORK/pt"; sleep 0.5; setup_passthrough; }
teardown_passthrough() { fusermount3 -u "$WORK/pt"; rm -rf "${WORK:?}/ptsrc"/*; }

dir_zfs=$WORK/zfs
zfs_start_daemon() {
  zfs-fuse --no-kstat-mount -p "$ZFS_PID"
  for _ in $(seq 50); do zpool list >/dev/null 2>&1 && return; sleep 0.2; done
  echo "run.sh: zfs-fuse did not start" >&2; exit 1
}
zfs_stop_daemon() {
  local pid; pid=$(cat "$ZFS_PID")
  kill "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
  rm -f "$ZFS_PID"
}
setup_zfs() {
  local size=$(( (3 * SIZE_MIB + 2048) ))M v
  mkdir -p "$WORK/vdevs"
  for v in 0 1 2 3; do truncate -s "$size" "$WORK/vdevs/$v"; done
  zfs_start_daemon
  zpool create -f -o cachefile=none -m "$WORK/zfs" frugalbench raidz2 "$WORK"/vdevs/{0,1,2,3} >&2
  zfs set dedup=on frugalbench
  zfs set compression=on frugalbench
}
remount_zfs() {  # exporting the pool drops its cached blocks
  zpool export frugalbench
  zpool import -d "$WORK/vdevs" frugalbench >&2
}
teardown_zfs() {
  # zfs-fuse may call its mount busy for a moment after a storm of files.
  local i
  for i in $(seq 10); do
    zpool destroy -f frugalbench 2>/dev/null && break
    [ "$i" = 5 ] && umount -l "$WORK/zfs"
    sleep 1
  done
  zfs_stop_daemon
  rm -rf "${WORK:?}/vdevs"
}
# Raw bytes allocated on the vdevs, parity included (zfs-fuse prints only
# rounded sizes such as 1.63G).
zfs_usage() {
  zpool list -H -o alloc frugalbench |
    awk '{ v = $1; u = substr(v, length(v)); n = v + 0
           f = u == "K" ? 2^10 : u == "M" ? 2^20 : u == "G" ? 2^30 : u == "T" ? 2^40 : 1
           printf "%.0f", n * f }'
}

dir_frugalfs=$WORK/mnt
frugal_pid() { cat "$WORK/meta/frugalfs.pid" 2>/dev/null || true; }
frugal_wait_exit() {
  local pid=$1
  [ -n "$pid" ] || return 0
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
}
setup_frugalfs() {
  "$FRUGALFS" mkfs "$WORK/meta" "$WORK"/vol{0,1,2,3} >/dev/null
  "$FRUGALFS" mount "$WORK/meta" "$WORK/mnt"
}
remount_frugalfs() {
  local pid; pid=$(frugal_pid)
  frugal_rss "$pid"
  fusermount3 -u "$WORK/mnt"
  frugal_wait_exit "$pid"
  "$FRUGALFS" mount "$WORK/meta" "$WORK/mnt"
}
teardown_frugalfs() {
  local pid; pid=$(frugal_pid)
  frugal_rss "$pid"
  fusermount3 -u "$WORK/mnt"
  frugal_wait_exit "$pid"
  rm -rf "${WORK:?}/meta" "$WORK"/vol?
}
PEAK_RSS_KB=0
frugal_rss() {
  local kb
  kb=$(awk '/^VmHWM/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0)
  [ "${kb:-0}" -gt "$PEAK_RSS_KB" ] && PEAK_RSS_KB=$kb
  return 0
}
volume_bytes() { du -sb --apparent-size "$WORK"/vol? | awk '{ s += $1 } END { printf "%.0f\n", s }'; }

# --- the workloads
declare -A R
record() { R[$1,$2]+="$3 "; }

write_file() { dd if="$1" of="$2" bs=1M conv=fsync status=none; }

run_once() {  # system run
  local sys=$1 run=$2 dir t0 t1 bytes_text
  eval "dir=\$dir_$sys"
  text_input "$run" > "$WORK/text.bin"
  bytes_text=$(stat -c %s "$WORK/text.bin")
  drop_caches
  "setup_$sys"

  local before=0
  [ "$sys" = frugalfs ] && before=$(volume_bytes)
  t0=$(now); write_file "$WORK/random.bin" "$dir/random.bin"; t1=$(now)
  record "$sys" write_random "$(rate "$SIZE_MIB" "$t0" "$t1")"
  if [ "$sys" = frugalfs ]; then  # what its volumes took meanwhile (data and parity, one disk)
    local written=$(($(volume_bytes) - before))
    record frugalfs volumes_random "$(rate "$((written / 1048576))" "$t0" "$t1")"
    PHYS_RANDOM=$(awk -v w="$written" -v l="$((SIZE_MIB * 1048576))" 'BEGIN { printf "%.2f", w / l }')
  fi
  t0=$(now); write_file "$WORK/random.bin" "$dir/random-copy.bin"; t1=$(now)
  record "$sys" write_dup "$(rate "$SIZE_MIB" "$t0" "$t1")"
  t0=$(now); write_file "$WORK/text.bin" "$dir/text.bin"; t1=$(now)
  record "$sys" write_text "$(rate "$((bytes_text / 1048576))" "$t0" "$t1")"

  "remount_$sys"; drop_caches
  if [ "$run" = 1 ]; then
    local logical=$((2 * SIZE_MIB * 1048576 + bytes_text))
    case $sys in
      frugalfs) PHYS_FRUGAL=$(awk -v p="$(volume_bytes)" -v l="$logical" 'BEGIN { printf "%.2f", p / l }')
                META_FRUGAL=$(awk -v m="$(du -sb "$WORK/meta" | cut -f1)" -v l="$logical" 'BEGIN { printf "%.3f%%", 100 * m / l }') ;;
      zfs) PHYS_ZFS=$(awk -v p="$(zfs_usage)" -v l="$logical" 'BEGIN { printf "%.2f", p / l }') ;;
    esac
  fi
  t0=$(now); cat "$dir/random.bin" > /dev/null; t1=$(now)
  record "$sys" read_cold "$(rate "$SIZE_MIB" "$t0" "$t1")"
  rm -f "$dir/random.bin" "$dir/random-copy.bin" "$dir/text.bin"

  t0=$(now); cp -a "$WORK/tree" "$dir/tree"; t1=$(now)
  record "$sys" cp_tree "$(rate "$TREE_FILES" "$t0" "$t1")"
  t0=$(now); rm -rf "$dir/tree"; t1=$(now)
  record "$sys" rm_tree "$(rate "$TREE_FILES" "$t0" "$t1")"

  # The file is laid out (and made durable) first; then the overwrites are
  # timed, with the fsync that makes them durable.
  (cd "$dir" && fio --name=layout --filename=fio.bin --size=256M --rw=write --bs=1M --end_fsync=1 \
    --output=/dev/null)
  t0=$(now)
  (cd "$dir" && fio --name=randwrite --filename=fio.bin --size=256M --rw=randwrite --bs=4k \
    --ioengine=psync --number_ios="$FIO_IOS" --end_fsync=1 --randrepeat=0 --output=/dev/null)
  t1=$(now)
  record "$sys" fio_randwrite "$(rate "$FIO_IOS" "$t0" "$t1")"
  rm -f "$dir/fio.bin"

  mkdir -p "$dir/storm"
  local storm
  storm=$("$WORK/meta_storm" "$dir/storm" "$FILES")
  record "$sys" meta_storm "$(echo "$storm" | awk '{ print $8 }')"
  rmdir "$dir/storm"

  "teardown_$sys"
}

SYSTEMS=(disk passthrough)
[ "$WITH_ZFS" = 1 ] && SYSTEMS+=(zfs)
SYSTEMS+=(frugalfs)
for run in $(seq "$RUNS"); do
  for sys in "${SYSTEMS[@]}"; do
    log "run $run/$RUNS: $sys"
    run_once "$sys" "$run"
  done
done

# --- the table
WORKLOADS=(write_random write_dup write_text read_cold cp_tree rm_tree fio_randwrite meta_storm)
declare -A UNIT=([write_random]=MB/s [write_dup]=MB/s [write_text]=MB/s [read_cold]=MB/s
                 [cp_tree]=files/s [rm_tree]=files/s [fio_randwrite]=IOPS [meta_storm]=ops/s)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a != "-") printf "%.2f", a / b; else print "-" }'; }
{
  echo "| workload | unit | disk | passthrough | zfs-fuse | frugalfs | frugalfs/passthrough | frugalfs/zfs-fuse |"
  echo "|---|---|---|---|---|---|---|---|"
  for w in "${WORKLOADS[@]}"; do
    d=$(echo "${R[disk,$w]:-}" | median)
    p=$(echo "${R[passthrough,$w]:-}" | median)
    z=$(echo "${R[zfs,$w]:-}" | median)
    f=$(echo "${R[frugalfs,$w]:-}" | median)
    echo "| $w | ${UNIT[$w]} | $d | $p | $z | $f | $(ratio "$f" "$p") | $(ratio "$f" "$z") |"
  done
  echo
  echo "Medians of $RUNS runs; $SIZE_MIB MiB files, tree of $TREE_FILES entries ($((TREE_BYTES / 1048576)) MiB)," \
    "$FIO_IOS fio writes, storm of $FILES files."
  echo "frugalfs: peak RSS $((PEAK_RSS_KB / 1024)) MiB; physical/logical ${PHYS_FRUGAL:-?} (metadata ${META_FRUGAL:-?} of logical);" \
    "zfs-fuse physical/logical ${PHYS_ZFS:--}. Logical = random + its copy + text."
  echo "During write_random frugalfs's four volumes took $(echo "${R[frugalfs,volumes_random]:-}" | median) MB/s" \
    "(data and parity: ${PHYS_RANDOM:-?} bytes per byte), the raw disk $(echo "${R[disk,write_random]:-}" | median) MB/s."
  echo "Machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)," \
    "kernel $(uname -r), $(df -h --output=source,fstype /var/tmp | tail -1 | awk '{print $2}') at /var/tmp;" \
    "$(date -u +%Y-%m-%d); $((SECONDS - T_START)) s."
  echo
  echo "Every run, in order (disk; passthrough; zfs-fuse; frugalfs):"
  echo
  for w in "${WORKLOADS[@]}"; do
    echo "- $w: ${R[disk,$w]:--}; ${R[passthrough,$w]:--}; ${R[zfs,$w]:--}; ${R[frugalfs,$w]:--}"
  done
} | tee "$OUT"
