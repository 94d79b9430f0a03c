#!/usr/bin/env bash
# 2000 random overwrites (1 B .. 300 KiB) of a 64 MiB file give the same bytes
# as on a local disk, before and after a remount.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" "$@"

REF=$WORK/reference
head -c $((64 << 20)) /dev/urandom >"$REF"
make_fs
mount_fs
log "copy in"
cp "$REF" "$MNT/file"
cmp "$REF" "$MNT/file" || fail "copy differs"
log "overwrite"
"$IO_TOOL" overwrite "${SEED:-20251123}" 2000 $((300 << 10)) "$REF" "$MNT/file" ||
  fail "overwrites failed"
cmp "$REF" "$MNT/file" || fail "file differs after the overwrites"
log "a second pass while the first is still buffered"
"$IO_TOOL" overwrite 7 500 $((300 << 10)) "$REF" "$MNT/file" || fail "overwrites failed"
cmp "$REF" "$MNT/file" || fail "file differs after the second pass"
unmount_fs
mount_fs
log "compare after remount"
assert_eq "$(stat -c %s "$MNT/file")" "$(stat -c %s "$REF")" "size after remount"
cmp "$REF" "$MNT/file" || fail "file differs after remount"
unmount_fs
log "ok"
