#!/usr/bin/env bash
# A full disk, on four small tmpfs volumes. First committed files fill them
# until a write fails with ENOSPC; df then shows nothing available, and
# deleting the files gives their space back without a remount. Then one large
# write fills them: it fails with ENOSPC (at fsync), later writes are refused
# at once with ENOSPC, data written before stays intact, the packs of the
# failed flushes are removed (no orphan fragment is left, even with no grace
# period), and once the large file is deleted writes succeed again.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" "$@"

[ "$(id -u)" = 0 ] || skip "mounting tmpfs volumes needs root"

VOLUME_MIB=48  # 4 x 48 MiB with 2+2 coding: about 96 MiB of incompressible data
for v in "${VOLS[@]}"; do
  mkdir -p "$v"
  mount -t tmpfs -o size=${VOLUME_MIB}M tmpfs "$v" || skip "cannot mount tmpfs"
  EXTRA_MOUNTS+=("$v")
done

# write_within SECONDS SRC DST: tries to write SRC to DST (with fsync) every
# half second until it succeeds; fails after SECONDS (dd's error in dd.err).
write_within() {
  local tries=$(($1 * 2))
  for _ in $(seq "$tries"); do
    dd if="$2" of="$3" bs=1M conv=fsync status=none 2> "$WORK/dd.err" && return 0
    sleep 0.5
  done
  return 1
}

make_fs
mount_fs

# Data committed before the disk fills.
head -c 4M /dev/urandom > "$WORK/keep.bin"
dd if="$WORK/keep.bin" of="$MNT/keep.bin" bs=1M conv=fsync status=none || fail "writing keep.bin failed"
head -c 8M /dev/urandom > "$WORK/after.bin"

log "filling the volumes with committed files"
full=0
for i in $(seq 40); do
  head -c 4M /dev/urandom > "$WORK/fill.bin"
  if ! dd if="$WORK/fill.bin" of="$MNT/fill$i.bin" bs=1M conv=fsync status=none 2> "$WORK/dd.err"; then
    grep -q "No space left on device" "$WORK/dd.err" || fail "filling failed with: $(cat "$WORK/dd.err")"
    full=$i
    break
  fi
done
[ $full -gt 5 ] || fail "the volumes did not fill up (or too soon): full=$full"
# df tells the truth: almost nothing is available any more.
avail_kib=$(df -k --output=avail "$MNT" | tail -1 | tr -d ' ')
[ "$avail_kib" -lt 8192 ] || fail "df reports $avail_kib KiB available on a full filesystem"
# Their space comes back once they are deleted: their packs go with the next
# metadata backup, which a full filesystem writes soon (from the reserve).
rm -f "$MNT"/fill*.bin
freed=0
for _ in $(seq 80); do
  avail_kib=$(df -k --output=avail "$MNT" | tail -1 | tr -d ' ')
  if [ "$avail_kib" -gt 32768 ]; then
    freed=1
    break
  fi
  sleep 0.5
done
[ $freed = 1 ] || fail "df shows $avail_kib KiB available 40 s after deleting the files"
write_within 40 "$WORK/after.bin" "$MNT/after2.bin" ||
  fail "no write succeeded within 40 s of deleting the committed files: $(cat "$WORK/dd.err")"
cmp -s "$WORK/after.bin" "$MNT/after2.bin" || fail "after2.bin reads back wrong"

log "filling the volumes"
head -c 160M /dev/urandom > "$WORK/big.bin"
if dd if="$WORK/big.bin" of="$MNT/big.bin" bs=1M conv=fsync status=none 2> "$WORK/dd.err"; then
  fail "160 MiB fitted on 4 x $VOLUME_MIB MiB volumes"
fi
grep -q "No space left on device" "$WORK/dd.err" || fail "the full write failed with: $(cat "$WORK/dd.err")"

# Known full: new data is refused at the write, not buffered.
if dd if=/dev/urandom of="$MNT/refused.bin" bs=64K count=1 status=none 2> "$WORK/dd.err"; then
  fail "a write was accepted while the filesystem is full"
fi
grep -q "No space left on device" "$WORK/dd.err" || fail "the refused write failed with: $(cat "$WORK/dd.err")"
cmp -s "$WORK/keep.bin" "$MNT/keep.bin" || fail "keep.bin changed while the disk was full"

log "deleting the large file"
rm -f "$MNT/big.bin" "$MNT/refused.bin"
write_within 30 "$WORK/after.bin" "$MNT/after.bin" ||
  fail "no write succeeded within 30 s of deleting the large file: $(cat "$WORK/dd.err")"
cmp -s "$WORK/after.bin" "$MNT/after.bin" || fail "after.bin reads back wrong"
cmp -s "$WORK/keep.bin" "$MNT/keep.bin" || fail "keep.bin reads back wrong"

unmount_fs
# No grace period: a fragment named by no record fails the check.
out=$("$FRUGALFS" fsck --grace 0 "$META" 2>&1) || fail "fsck --grace 0 found problems: $(echo "$out" | grep -v "^warning" | tail -5)"

mount_fs
cmp -s "$WORK/keep.bin" "$MNT/keep.bin" || fail "keep.bin wrong after remount"
cmp -s "$WORK/after.bin" "$MNT/after.bin" || fail "after.bin wrong after remount"
cmp -s "$WORK/after.bin" "$MNT/after2.bin" || fail "after2.bin wrong after remount"
unmount_fs
log "ok"
