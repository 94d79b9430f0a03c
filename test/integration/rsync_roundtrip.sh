#!/usr/bin/env bash
# rsync -aHAX into the mount and back out keeps contents, hard links,
# symlinks, xattrs, ACLs, permissions, times and sparse files.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" "$@"
command -v rsync >/dev/null || skip "rsync is not installed"

SRC=$WORK/src
OUT=$WORK/out
mkdir -p "$SRC/dir/sub" "$SRC/empty"
cp -a /usr/share/common-licenses "$SRC/licenses" 2>/dev/null || seq 1 50000 >"$SRC/licenses"
head -c 3000000 /dev/urandom >"$SRC/dir/random.bin"
echo "linked" >"$SRC/dir/hl1"
ln "$SRC/dir/hl1" "$SRC/dir/sub/hl2"
ln "$SRC/dir/hl1" "$SRC/hl3"
ln -s dir/hl1 "$SRC/rel-link"
ln -s /etc/hostname "$SRC/abs-link"
ln -s missing "$SRC/dangling-link"
echo secret >"$SRC/odd-perms"
chmod 0604 "$SRC/odd-perms"
echo sticky >"$SRC/dir/suid"
chmod 6755 "$SRC/dir/suid"
chmod 1777 "$SRC/empty"
truncate -s 20M "$SRC/sparse"
printf 'middle' | dd of="$SRC/sparse" bs=1 seek=10485760 conv=notrunc status=none
setfattr -n user.x -v hello "$SRC/dir/random.bin"
setfattr -n user.binary -v 0x00ff10 "$SRC/odd-perms"
setfattr -n user.on-dir -v yes "$SRC/dir"
HAVE_ACL=0
if command -v setfacl >/dev/null && setfacl -m u:1234:rw "$SRC/odd-perms" 2>/dev/null; then
  setfacl -d -m u:1234:rwx "$SRC/dir"
  HAVE_ACL=1
fi
touch -h -d "2010-01-01 00:00:00.5" "$SRC/rel-link"
touch -d "2011-11-11 11:11:11.111111111" "$SRC/dir/random.bin"
# Directories created in the same second as their copy confuse rsync's time
# comparison; give them times in the past, like any real tree.
touch -d "2012-12-12 12:12:12.121212121" "$SRC/empty" "$SRC/dir/sub" "$SRC/dir" "$SRC"

make_fs
mount_fs
log "rsync in"
rsync -aHAX "$SRC/" "$MNT/tree/" || fail "rsync into the mount failed"
unmount_fs
mount_fs
log "rsync out"
rsync -aHAX "$MNT/tree/" "$OUT/" || fail "rsync out of the mount failed"
# The copy in the mount itself must match too.
diff -r --no-dereference "$SRC" "$MNT/tree" >/dev/null || fail "diff -r source vs mount"
unmount_fs

log "compare"
diff -r --no-dereference "$SRC" "$OUT" || fail "diff -r source vs round trip"
assert_eq "$(stat -c %i "$OUT/dir/hl1")" "$(stat -c %i "$OUT/dir/sub/hl2")" "hard link (sub/hl2)"
assert_eq "$(stat -c %i "$OUT/dir/hl1")" "$(stat -c %i "$OUT/hl3")" "hard link (hl3)"
assert_eq "$(stat -c %h "$OUT/hl3")" 3 "link count"
for f in odd-perms dir/suid dir/random.bin sparse rel-link; do
  assert_eq "$(stat -c "%A %u %g %s %y" "$OUT/$f")" "$(stat -c "%A %u %g %s %y" "$SRC/$f")" "stat of $f"
done
assert_eq "$(stat -c "%A %y" "$OUT/empty")" "$(stat -c "%A %y" "$SRC/empty")" "stat of a sticky directory"
for f in dir/random.bin odd-perms dir; do
  assert_eq "$(cd "$OUT" && getfattr -d -m - -e hex "$f" 2>/dev/null | grep -v '^#')" \
    "$(cd "$SRC" && getfattr -d -m - -e hex "$f" 2>/dev/null | grep -v '^#')" "xattrs of $f"
done
if [ "$HAVE_ACL" == 1 ]; then
  assert_eq "$(cd "$OUT" && getfacl -p odd-perms dir 2>/dev/null)" \
    "$(cd "$SRC" && getfacl -p odd-perms dir 2>/dev/null)" "ACLs"
else
  log "ACL tools or ACL support missing: ACL check skipped"
fi
assert_eq "$(readlink "$OUT/abs-link")" /etc/hostname "absolute symlink"
log "ok"
