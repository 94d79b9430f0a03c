#!/usr/bin/env bash
# A 5 GiB sparse file: holes read as zeros, written regions read back, and
# the volumes store only what was written.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" "$@"

GiB=$((1 << 30))
MiB=$((1 << 20))
SIZE=$((5 * GiB))
head -c $((4 * MiB)) /dev/urandom >"$WORK/a"
head -c $((3 * MiB)) /dev/urandom >"$WORK/b"
head -c $((1 * MiB)) /dev/urandom >"$WORK/c"

make_fs
before=$(volume_usage)
mount_fs
F=$MNT/big
truncate -s 5G "$F"
# write REGION_FILE OFFSET
put() { dd if="$1" of="$F" bs=1M oflag=seek_bytes seek="$2" conv=notrunc status=none; }
# same OFFSET LENGTH REFERENCE: the bytes at OFFSET equal REFERENCE.
same() {
  local got
  got=$(dd if="$F" bs=1M iflag=skip_bytes,count_bytes skip="$1" count="$2" status=none | sha256sum)
  assert_eq "$got" "$(sha256sum <"$3")" "region at $1"
}
log "write"
put "$WORK/a" 0
put "$WORK/b" $((9 * GiB / 2))
put "$WORK/c" $((SIZE - MiB))
assert_eq "$(stat -c %s "$F")" "$SIZE" "size"

check() {
  same 0 $((4 * MiB)) "$WORK/a"
  same $((9 * GiB / 2)) $((3 * MiB)) "$WORK/b"
  same $((SIZE - MiB)) $MiB "$WORK/c"
  head -c $((8 * MiB)) /dev/zero >"$WORK/zeros"
  same $((2 * GiB)) $((8 * MiB)) "$WORK/zeros"
  same $((4 * MiB)) $((8 * MiB)) "$WORK/zeros"
  same $((9 * GiB / 2 - 8 * MiB)) $((8 * MiB)) "$WORK/zeros"
  assert_eq "$(stat -c %s "$F")" "$SIZE" "size"
}
log "read back"
check
unmount_fs
used=$(( $(volume_usage) - before ))
log "volumes grew by $used bytes for 8 MiB written into a 5 GiB file"
[ "$used" -lt $((100 * MiB)) ] || fail "volume usage grew by $used bytes (> 100 MiB)"
mount_fs
log "read back after remount"
check
[ "$(stat -c %b "$F")" -lt $((200 * 1024 * 2)) ] || fail "st_blocks counts the holes: $(stat -c %b "$F")"

# One byte every 2 KiB over 4 MiB: a 1 MiB read meets 512 one-byte extents
# and as many holes (more pieces than one reply may carry in place).
dots() {
  perl -e 'open(my $f, "+<", $ARGV[0]) or die "$ARGV[0]: $!";
           for (my $i = 0; $i < 4 << 20; $i += 2048) {
             sysseek($f, $i, 0) or die "seek: $!";
             syswrite($f, chr(1 + ($i >> 11) % 251)) == 1 or die "write: $!";
           }' "$1"
}
log "a file of 2048 one-byte extents"
: >"$WORK/dots" && dots "$WORK/dots"
: >"$MNT/dots" && dots "$MNT/dots"
cmp "$WORK/dots" "$MNT/dots" || fail "dotted file differs before the flush"
remount_fs
cmp "$WORK/dots" "$MNT/dots" || fail "dotted file differs after remount"
unmount_fs
log "ok"
