# Shared helpers of the integration tests; sourced by each test script as
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" "$@"
# with the arguments meson passes: FRUGALFS_BINARY IO_TOOL_BINARY.
#
# Provides: WORK (a fresh directory under /var/tmp), META, MNT, VOLS (four
# volume directories), make_fs, mount_fs, unmount_fs, remount_fs,
# volume_usage, log, fail, skip. An EXIT trap always unmounts, stops the
# daemon and removes WORK.
set -euo pipefail

[ $# -ge 2 ] || { echo "usage: $0 FRUGALFS IO_TOOL" >&2; exit 2; }
FRUGALFS=$(realpath "$1")
IO_TOOL=$(realpath "$2")
TEST_NAME=$(basename "$0" .sh)
T0=$SECONDS

log() { echo "[$TEST_NAME +$((SECONDS - T0))s] $*"; }

skip() { echo "SKIP: $*"; exit 77; }

fail() {
  echo "FAIL [$TEST_NAME]: $*" >&2
  if [ -n "${META:-}" ] && [ -f "$META/frugalfs.log" ]; then
    echo "--- last lines of $META/frugalfs.log:" >&2
    tail -n 40 "$META/frugalfs.log" >&2 || true
  fi
  exit 1
}

# Mounting needs /dev/fuse, and root or fusermount3.
[ -c /dev/fuse ] || skip "no /dev/fuse"
if [ "$(id -u)" != 0 ] && ! command -v fusermount3 >/dev/null; then
  skip "not root and no fusermount3"
fi

WORK=$(mktemp -d /var/tmp/frugalfs-test.XXXXXX)
META=$WORK/meta
MNT=$WORK/mnt
VOLS=("$WORK/vol0" "$WORK/vol1" "$WORK/vol2" "$WORK/vol3")
mkdir -p "$MNT"

daemon_pid() { cat "$META/frugalfs.pid" 2>/dev/null || true; }

is_mounted() { mountpoint -q "$1" 2>/dev/null || grep -qs " $1 " /proc/self/mountinfo; }

# Unmounts $1 with fusermount3, falling back to umount.
detach() {
  fusermount3 -u "$1" 2>/dev/null || umount "$1" 2>/dev/null
}

cleanup() {
  local status=$?
  set +e
  local pid
  pid=$(daemon_pid)
  for m in "$MNT" "${EXTRA_MOUNTS[@]}"; do
    if is_mounted "$m"; then
      detach "$m" || umount -l "$m"
    fi
  done
  if [ -n "$pid" ]; then
    # Give the daemon time to flush, then stop it the hard way.
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null
  fi
  rm -rf --one-file-system "$WORK"
  log "done (exit $status)"
  exit $status
}
EXTRA_MOUNTS=()
trap cleanup EXIT

# make_fs [MKFS_OPTIONS...]: a filesystem on META and the four VOLS.
make_fs() {
  "$FRUGALFS" mkfs "$@" "$META" "${VOLS[@]}" >"$WORK/mkfs.out" 2>&1 ||
    fail "mkfs failed: $(cat "$WORK/mkfs.out")"
}

# mount_fs [MOUNT_OPTIONS...]: mounts META on MNT; returns once it is ready.
mount_fs() {
  local out
  out=$("$FRUGALFS" mount "$@" "$META" "$MNT" 2>&1) || fail "mount failed: $out"
  is_mounted "$MNT" || fail "frugalfs mount returned 0 but $MNT is not mounted"
  [ -n "$(daemon_pid)" ] || fail "no daemon pid file after mount"
}

# stop_mount: unmounts and waits until the daemon has flushed and exited.
stop_mount() {
  local pid
  pid=$(daemon_pid)
  local tries=0
  until detach "$MNT"; do
    tries=$((tries + 1))
    [ $tries -lt 50 ] || fail "cannot unmount $MNT"
    sleep 0.2
  done
  if [ -n "$pid" ]; then
    local waited=0
    while kill -0 "$pid" 2>/dev/null; do
      waited=$((waited + 1))
      [ $waited -lt 1200 ] || fail "daemon $pid still running 120 s after unmount"
      sleep 0.1
    done
  fi
}

# unmount_fs: stop_mount, and the daemon must have stopped cleanly (flushed
# everything).
unmount_fs() {
  stop_mount
  grep -q "stopped cleanly" "$META/frugalfs.log" 2>/dev/null ||
    fail "the daemon did not log a clean stop"
  # Mark the clean stop as seen, so the next unmount is checked afresh.
  sed -i 's/stopped cleanly/stopped (checked)/' "$META/frugalfs.log"
  # Every unmount leaves a filesystem whose invariants hold (orphan
  # fragments younger than fsck's grace period are not counted).
  if [ "${FSCK_AFTER_UNMOUNT:-1}" = 1 ]; then
    local out
    out=$("$FRUGALFS" fsck "$META" 2>&1) || fail "fsck after unmount found errors: $(echo "$out" | tail -5)"
  fi
}

remount_fs() { unmount_fs; mount_fs "$@"; }

# Bytes stored in the four volume directories (apparent size; missing ones
# count 0).
volume_usage() {
  local total=0 v n
  for v in "${VOLS[@]}"; do
    if [ -d "$v" ]; then
      n=$(du -sb "$v" | cut -f1)
      total=$((total + n))
    fi
  done
  echo "$total"
}

# Bytes of the fragments of data packs on the volumes, and of metadata
# backups (their pack ids have the top bit set: "frag-8..." to "frag-f...").
fragment_usage() {
  local pattern=$1 v
  for v in "${VOLS[@]}"; do
    [ -d "$v" ] && find "$v" -type f -name "$pattern" -printf '%s\n'
  done | awk '{ s += $1 } END { print s + 0 }'
}
data_usage() { fragment_usage 'frag-[0-7]*'; }
backup_usage() { fragment_usage 'frag-[89a-f]*'; }

# Bytes of regular files under a directory (logical size).
tree_bytes() { du -sb --apparent-size "$1" | cut -f1; }

# assert_eq ACTUAL EXPECTED MESSAGE
assert_eq() { [ "$1" == "$2" ] || fail "$3: got '$1', expected '$2'"; }
