#!/usr/bin/env bash
# A quick A/B of frugalfs builds, for work on speed (the
# full comparison with other systems is run.sh).
#
#   sudo test/bench/phases.sh [--size MIB] [--runs N] [--meta] [--fio] [--tmpfs] [-o OPTIONS] FRUGALFS...
#
# For each frugalfs binary, in turns (so that a machine that gets slower or
# faster during the run affects every binary alike), N times: mkfs on four
# fresh volumes under /var/tmp, mount, then
#   write_random  SIZE MiB of unique random data, fsync at the end
#   write_dup     the same data again under another name
#   read_cold     the first file after a remount and drop_caches
#   read_warm     the same file again, at once (what caches keep)
# and with --meta, on a fresh filesystem, as run.sh does them:
#   cp_tree       cp -a of /usr/include and /usr/share/doc (files/s)
#   rm_tree       rm -rf of that copy, after a sync (files/s)
#   meta_storm    create, stat and unlink 5000 empty files (ops/s)
# and with --fio, as run.sh does it:
#   fio_randwrite 16384 random 4 KiB overwrites in a 256 MiB file (IOPS)
# -o passes mount options (as frugalfs mount -o) to every mount. --tmpfs puts
# the volumes and the metadata on a tmpfs: what the data path does without
# the disk (its CPU bound; read_cold then reads from memory).
# Prints, per binary and phase, the median rate and the median CPU seconds
# the daemon used in the phase (user + system), then every run's rate, and
# the daemon's peak RSS.
set -euo pipefail

SIZE_MIB=1024
RUNS=3
META=0
FIO=0
TMPFS=0
MOUNT_OPTIONS=()
usage() { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; }
BINS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --size) SIZE_MIB=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --meta) META=1; shift ;;
    --fio) FIO=1; shift ;;
    --tmpfs) TMPFS=1; shift ;;
    -o) MOUNT_OPTIONS=(-o "$2"); shift 2 ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "phases.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    *) BINS+=("$(readlink -f "$1")"); shift ;;
  esac
done
[ "${#BINS[@]}" -gt 0 ] || { usage >&2; exit 2; }
for n in "$SIZE_MIB" "$RUNS"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "phases.sh: '$n' is not a positive number" >&2; exit 2; }
done
for b in "${BINS[@]}"; do [ -x "$b" ] || { echo "phases.sh: $b is not executable" >&2; exit 2; }; done
[ "$(id -u)" = 0 ] || { echo "phases.sh: run it as root (it mounts and drops caches)" >&2; exit 1; }

WORK=$(mktemp -d /var/tmp/frugalfs-phases.XXXXXX)
STORE=$WORK  # the volumes and the metadata
cleanup() {
  set +e
  mountpoint -q "$WORK/mnt" && fusermount3 -u "$WORK/mnt"
  mountpoint -q "$WORK/store" && umount "$WORK/store"
  rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT
if [ "$TMPFS" = 1 ]; then
  STORE=$WORK/store
  mkdir "$STORE"
  mount -t tmpfs -o size=$((4 * SIZE_MIB + 2048))m frugalfs-phases "$STORE"
fi
head -c "${SIZE_MIB}M" /dev/urandom > "$WORK/random.bin"
if [ "$META" = 1 ]; then
  mkdir -p "$WORK/tree"
  cp -a /usr/include "$WORK/tree/include"
  cp -a /usr/share/doc "$WORK/tree/doc"
  TREE_FILES=$(find "$WORK/tree" | wc -l)
  c++ -O2 -std=c++20 -o "$WORK/meta_storm" "$(dirname "$0")/meta_storm.cc"
fi
if [ "$FIO" = 1 ] && ! command -v fio >/dev/null; then
  echo "phases.sh: --fio needs fio (apt-get install fio)" >&2
  exit 1
fi

now() { date +%s.%N; }
cpu_seconds() { awk '{ printf "%.2f", ($14 + $15) / 100 }' "/proc/$1/stat"; }
daemon_pid() { cat "$STORE/meta/frugalfs.pid"; }
unmount() {
  local pid; pid=$(daemon_pid)
  fusermount3 -u "$WORK/mnt"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
}
declare -A MBS CPU RSS
# phase NAME BIN UNITS COMMAND...: runs COMMAND, records UNITS per second
# (MB for the data phases) and the daemon's CPU seconds.
phase() {
  local name=$1 bin=$2 units=$3 pid c0 c1 t0 t1
  shift 3
  pid=$(daemon_pid)
  c0=$(cpu_seconds "$pid"); t0=$(now)
  "$@"
  t1=$(now); c1=$(cpu_seconds "$pid")
  MBS[$bin,$name]+="$(awk -v n="$units" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }') "
  CPU[$bin,$name]+="$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.2f", b - a }') "
}
MB=$(awk -v n="$SIZE_MIB" 'BEGIN { print n * 1.048576 }')
peak_rss() { awk '/^VmHWM/ { print int($2 / 1024) }' "/proc/$(daemon_pid)/status"; }

run_once() {
  local bin=$1
  rm -rf "$STORE/meta" "$STORE"/vol? && mkdir -p "$WORK/mnt"
  "$bin" mkfs "$STORE/meta" "$STORE"/vol{0,1,2,3} >/dev/null
  "$bin" mount "${MOUNT_OPTIONS[@]}" "$STORE/meta" "$WORK/mnt"
  phase write_random "$bin" "$MB" dd if="$WORK/random.bin" of="$WORK/mnt/a" bs=1M conv=fsync status=none
  phase write_dup "$bin" "$MB" dd if="$WORK/random.bin" of="$WORK/mnt/b" bs=1M conv=fsync status=none
  RSS[$bin]+="$(peak_rss) "
  unmount
  sync; echo 3 > /proc/sys/vm/drop_caches
  "$bin" mount "${MOUNT_OPTIONS[@]}" "$STORE/meta" "$WORK/mnt"
  phase read_cold "$bin" "$MB" cat "$WORK/mnt/a" > /dev/null
  phase read_warm "$bin" "$MB" cat "$WORK/mnt/a" > /dev/null
  RSS[$bin]+="$(peak_rss) "
  unmount
  if [ "$FIO" = 1 ]; then
    "$bin" mount "${MOUNT_OPTIONS[@]}" "$STORE/meta" "$WORK/mnt"
    (cd "$WORK/mnt" && fio --name=layout --filename=fio.bin --size=256M --rw=write --bs=1M \
      --end_fsync=1 --output=/dev/null)
    phase fio_randwrite "$bin" 16384 sh -c "cd '$WORK/mnt' && fio --name=randwrite --filename=fio.bin \
      --size=256M --rw=randwrite --bs=4k --ioengine=psync --number_ios=16384 --end_fsync=1 \
      --randrepeat=0 --output=/dev/null"
    unmount
  fi
  [ "$META" = 1 ] || return 0
  rm -rf "$STORE/meta" "$STORE"/vol?
  "$bin" mkfs "$STORE/meta" "$STORE"/vol{0,1,2,3} >/dev/null
  "$bin" mount "${MOUNT_OPTIONS[@]}" "$STORE/meta" "$WORK/mnt"
  phase cp_tree "$bin" "$TREE_FILES" cp -a "$WORK/tree" "$WORK/mnt/tree"
  sync
  phase rm_tree "$bin" "$TREE_FILES" rm -rf "$WORK/mnt/tree"
  mkdir "$WORK/mnt/storm"
  local storm
  storm=$("$WORK/meta_storm" "$WORK/mnt/storm" 5000 | awk '{ print $8 }')
  MBS[$bin,meta_storm]+="$storm "
  CPU[$bin,meta_storm]+="- "
  RSS[$bin]+="$(peak_rss) "
  unmount
}
for _ in $(seq "$RUNS"); do
  for bin in "${BINS[@]}"; do run_once "$bin"; done
done

median() { tr ' ' '\n' | awk 'NF' | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
echo "medians of $RUNS runs, $SIZE_MIB MiB, $(nproc) cores"
PHASES=(write_random write_dup read_cold read_warm)
[ "$FIO" = 1 ] && PHASES+=(fio_randwrite)
[ "$META" = 1 ] && PHASES+=(cp_tree rm_tree meta_storm)
printf '%-40s %-13s %8s %10s\n' binary phase "rate" "cpu s"
echo "(rates: MB/s for the data phases, IOPS for fio, files/s for the trees, ops/s for the storm)"
for bin in "${BINS[@]}"; do
  for p in "${PHASES[@]}"; do
    printf '%-40s %-13s %8s %10s   runs: %s\n' "$bin" "$p" "$(echo "${MBS[$bin,$p]}" | median)" \
      "$(echo "${CPU[$bin,$p]}" | median)" "${MBS[$bin,$p]}"
  done
  printf '%-40s %-13s %8s MiB (largest of the runs)\n' "$bin" "peak RSS" \
    "$(echo "${RSS[$bin]}" | tr ' ' '\n' | awk 'NF' | sort -n | tail -1)"
done
