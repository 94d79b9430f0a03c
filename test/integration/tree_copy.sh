#!/usr/bin/env bash
# cp -a of a source tree (thousands of files) survives a remount; a second
# copy of the same tree costs almost no space (dedup); deleting everything
# gives the space back.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" "$@"

SRC=${TREE_SRC:-/usr/include}
[ -d "$SRC" ] || skip "$SRC is missing"
log "source $SRC: $(find "$SRC" | wc -l) entries, $(tree_bytes "$SRC") bytes"

make_fs
base=$(data_usage)
mount_fs
log "cp -a (first copy)"
cp -a "$SRC" "$MNT/copy1"
log "diff -r"
diff -r --no-dereference "$SRC" "$MNT/copy1" >/dev/null || fail "first copy differs"
# cp -a keeps modes, owners, sizes, link targets and nanosecond mtimes
# (directory sizes are the filesystem's own business).
listing() {
  (cd "$1" && find . \( -type d -printf '%p d %m %u %g %T@\n' \) -o \
    -printf '%p %y %m %u %g %s %T@ %l\n' | LC_ALL=C sort)
}
listing "$SRC" > "$WORK/src.list"
listing "$MNT/copy1" > "$WORK/copy1.list"
cmp -s "$WORK/src.list" "$WORK/copy1.list" ||
  fail "metadata differs: $(diff "$WORK/src.list" "$WORK/copy1.list" | head -5)"
unmount_fs
after1=$(data_usage)
growth1=$((after1 - base))
log "first copy stored $growth1 bytes of data on the volumes (metadata backups: $(backup_usage) bytes)"
[ "$growth1" -gt 0 ] || fail "the volumes did not grow"

mount_fs
log "diff -r after remount"
diff -r --no-dereference "$SRC" "$MNT/copy1" >/dev/null || fail "first copy differs after remount"
listing "$MNT/copy1" | cmp -s - "$WORK/src.list" || fail "metadata differs after remount"
log "cp -a (second copy)"
cp -a "$SRC" "$MNT/copy2"
unmount_fs
after2=$(data_usage)
growth2=$((after2 - after1))
log "second copy stored $growth2 bytes ($((100 * growth2 / growth1))% of the first)"
[ $((growth2 * 50)) -lt "$growth1" ] || fail "second copy grew the volumes by $growth2 bytes (>= 2% of $growth1)"

mount_fs
diff -r --no-dereference "$SRC" "$MNT/copy2" >/dev/null || fail "second copy differs"
log "rm -rf"
rm -rf "$MNT/copy1" "$MNT/copy2"
[ -z "$(ls -A "$MNT")" ] || fail "the mount is not empty after rm -rf"
# Garbage collection runs when data is flushed and at shutdown; two cycles
# leave it every chance to finish.
remount_fs
unmount_fs
final=$(data_usage)
peak=$((after2 - base))
allowance=$(((1 << 20) + peak / 20))
log "after deleting everything: $((final - base)) bytes of data remain (allowed $allowance)," \
  "metadata backups $(backup_usage) bytes"
[ $((final - base)) -lt "$allowance" ] || fail "space not returned: $((final - base)) bytes remain"
# Three backups are kept, the newest of an empty filesystem: they stay small.
[ "$(backup_usage)" -lt $((growth1 / 10)) ] || fail "metadata backups take $(backup_usage) bytes"
log "ok"
