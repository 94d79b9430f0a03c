# The crash harness: for each seed, a fresh filesystem is mounted, a mixed
# workload (crash_workload: several writers creating, appending, overwriting,
# truncating, renaming, unlinking and fsyncing) runs on it, and the daemon is
# killed with SIGKILL at a moment chosen by the seed. Then:
#   - fsck --repair must find no errors but orphan fragments (what the
#     interrupted pack writes left), and remove those;
#   - the filesystem must mount again, and crash_workload checks that every
#     fsynced file has exactly its fsynced contents, that no file holds bytes
#     never written to it, and that completed namespace operations survived;
#   - a clean unmount must leave fsck clean again.
# Every seed is printed; a failing seed N reproduces with SEEDS 1, FIRST_SEED N.
#
# The power-loss variant (with SHIM and APPLY): the daemon runs with
# power_loss_shim preloaded, watching one volume (seed mod 4); after the kill,
# power_loss_apply also undoes on that volume every directory change and
# data write that was not fsynced, as a power loss of that server could.
#
#   bash crash_harness.sh FRUGALFS CRASH_WORKLOAD SEEDS FIRST_SEED [SHIM APPLY]
[ $# -eq 4 ] || [ $# -eq 6 ] ||
  { echo "usage: $0 FRUGALFS CRASH_WORKLOAD SEEDS FIRST_SEED [SHIM APPLY]" >&2; exit 2; }
SEEDS=$3
FIRST_SEED=$4
SHIM=${5:+$(realpath "$5")}
APPLY=${6:+$(realpath "$6")}
source "$(dirname "${BASH_SOURCE[0]}")/../integration/lib.sh" "$1" "$2"
WORKLOAD=$IO_TOOL
WRITERS=${CRASH_WRITERS:-3}
workload_pid=
# A failure also stops the workload, which would otherwise wait for its cue.
eval "lib_$(declare -f fail)"
fail() {
  [ -z "$workload_pid" ] || kill -9 "$workload_pid" 2>/dev/null || true
  lib_fail "$@"
}

# kill_daemon: SIGKILL, then wait for the process to be gone and detach the
# dead mount.
kill_daemon() {
  local pid
  pid=$(daemon_pid)
  [ -n "$pid" ] || fail "no daemon pid"
  kill -9 "$pid"
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  kill -0 "$pid" 2>/dev/null && fail "daemon $pid survived SIGKILL"
  detach "$MNT" || umount -l "$MNT" || fail "cannot detach the dead mount"
}

run_seed() {
  local seed=$1
  rm -rf "$META" "${VOLS[@]}" "$WORK"/vol?.grave "$WORK/go" "$WORK/workload.out" "$WORK/power.log"
  make_fs
  local lossy=
  if [ -n "$SHIM" ]; then
    lossy=${VOLS[$((seed % 4))]}
    LD_PRELOAD=$SHIM FRUGALFS_POWER_LOSS_DIR=$lossy FRUGALFS_POWER_LOSS_LOG=$WORK/power.log mount_fs
  else
    mount_fs
  fi
  # The kill comes 0.3 to 6 s into the workload.
  RANDOM=$seed
  local delay_ms=$((300 + RANDOM % 5700))
  "$WORKLOAD" "$MNT" "$seed" "$WRITERS" 60 "$WORK/go" >"$WORK/workload.out" 2>&1 &
  workload_pid=$!
  sleep "$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))"
  kill -0 "$workload_pid" 2>/dev/null ||
    fail "seed $seed: the workload stopped before the kill: $(cat "$WORK/workload.out")"
  kill_daemon
  local power=
  if [ -n "$lossy" ]; then
    power=$("$APPLY" "$WORK/power.log") || fail "seed $seed: power_loss_apply failed: $power"
    power="; $(basename "$lossy") $power"
  fi
  # Nothing is in flight once the daemon is dead, so every unnamed fragment
  # is crash debris: --grace 0 --repair removes it, and may remove nothing
  # else (exit 1: errors corrected, all of them orphan fragments).
  local out status=0
  out=$("$FRUGALFS" fsck --repair --grace 0 "$META" 2>&1) || status=$?
  if [ $status -gt 1 ] || grep -v '^repaired: orphan-fragment' <<<"$out" | grep -q '^\(error\|repaired\):'; then
    echo "$out" >&2
    fail "seed $seed: fsck --repair after the crash exited $status"
  fi
  # A fragment that metadata names must have survived the power loss too
  # (parity would hide its loss from the reads).
  if [ -n "$lossy" ] && grep -q '^warning: degraded-pack' <<<"$out"; then
    echo "$out" >&2
    fail "seed $seed: the power loss of $(basename "$lossy") lost a fragment that metadata names"
  fi
  local repaired fsck_time
  repaired=$(grep -c '^repaired:' <<<"$out" || true)
  fsck_time=$(tail -n 1 <<<"$out" | grep -o '[0-9.]* s$' || true)
  mount_fs
  touch "$WORK/go"
  status=0
  wait "$workload_pid" || status=$?
  workload_pid=
  if [ $status -ne 0 ]; then
    cat "$WORK/workload.out" >&2
    fail "seed $seed: what survived the crash is wrong (workload exit $status)"
  fi
  unmount_fs
  log "seed $seed: killed after ${delay_ms} ms$power; fsck $fsck_time, $repaired orphan fragments removed; $(grep -o 'stopped after [0-9]* operations ([0-9]* fsyncs)' "$WORK/workload.out"); $(grep -o 'checked .*' "$WORK/workload.out")"
}

# First, without randomness: data written with O_SYNC, O_DSYNC, or followed
# by fsync survives a kill right after the write returns, with the
# directories naming it (their operations are in the metadata log by then).
sync_writes() {
  rm -rf "$META" "${VOLS[@]}"
  make_fs
  mount_fs
  local i
  for i in 1 2 3; do head -c $((3 << 20)) /dev/urandom >"$WORK/ref$i"; done
  mkdir -p "$MNT/a/b"
  dd if="$WORK/ref1" of="$MNT/a/b/osync" bs=1M oflag=sync status=none
  dd if="$WORK/ref2" of="$MNT/a/odsync" bs=256K oflag=dsync status=none
  cp "$WORK/ref3" "$MNT/fsynced"
  sync "$MNT/fsynced"  # fsync(2) of that one file
  kill_daemon
  mount_fs
  cmp "$WORK/ref1" "$MNT/a/b/osync" || fail "an O_SYNC write did not survive the kill"
  cmp "$WORK/ref2" "$MNT/a/odsync" || fail "an O_DSYNC write did not survive the kill"
  cmp "$WORK/ref3" "$MNT/fsynced" || fail "an fsynced file did not survive the kill"
  unmount_fs
  log "O_SYNC, O_DSYNC and fsync writes survived an immediate kill"
}
[ -n "$SHIM" ] || sync_writes

for ((seed = FIRST_SEED; seed < FIRST_SEED + SEEDS; seed++)); do
  run_seed "$seed"
done
log "all $SEEDS seeds passed (first $FIRST_SEED)"
