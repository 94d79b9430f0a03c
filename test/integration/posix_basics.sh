#!/usr/bin/env bash
# POSIX behaviour through the mount: directories, links, renames, attributes,
# times, truncate, append, unlinked open files, symlinks, statfs, xattrs.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" "$@"

make_fs
mount_fs
cd "$MNT"

log "directories"
mkdir -p a/b/c
[ -d a/b/c ] || fail "mkdir -p"
rmdir a/b/c
[ ! -e a/b/c ] || fail "rmdir"
mkdir a/b/c
echo x >a/b/c/f
rmdir a/b/c 2>/dev/null && fail "rmdir of a non-empty directory succeeded"
assert_eq "$(stat -c %h a)" 3 "nlink of a directory with one subdirectory"
assert_eq "$(ls a/b/c)" f "listing"

log "hard links"
echo data >h1
ln h1 h2
ln h1 a/h3
assert_eq "$(stat -c %h h1)" 3 "nlink after two links"
assert_eq "$(stat -c %i h1)" "$(stat -c %i a/h3)" "inode of a hard link"
rm h2
assert_eq "$(stat -c %h h1)" 2 "nlink after unlink"
assert_eq "$(cat a/h3)" data "content through a link"

log "rename"
echo one >r1
echo two >r2
mv r1 r2
assert_eq "$(cat r2)" one "rename over an existing file"
[ ! -e r1 ] || fail "rename left the source"
mv r2 a/b/moved
assert_eq "$(cat a/b/moved)" one "rename across directories"
mv a/b/c a/c2
assert_eq "$(cat a/c2/f)" x "directory rename"
echo left >x1
echo right >x2
"$IO_TOOL" rename exchange x1 x2 || fail "RENAME_EXCHANGE failed"
assert_eq "$(cat x1):$(cat x2)" "right:left" "RENAME_EXCHANGE"
"$IO_TOOL" rename noreplace x1 x2 2>/dev/null && fail "RENAME_NOREPLACE replaced an existing file"
"$IO_TOOL" rename noreplace x1 x3 || fail "RENAME_NOREPLACE to a new name"
assert_eq "$(cat x3)" right "RENAME_NOREPLACE content"

log "attributes and times"
touch p
chmod 4751 p
assert_eq "$(stat -c %a p)" 4751 "chmod"
chown 1234:5678 p
assert_eq "$(stat -c %u:%g p)" 1234:5678 "chown"
assert_eq "$(stat -c %a p)" 751 "chown clears the setuid bit"
chmod 4751 p
assert_eq "$(stat -c %a p)" 4751 "chmod after chown"
touch -d "2001-02-03 04:05:06.123456789" p
stat -c %y p | grep -q "04:05:06.123456789" || fail "mtime lost its nanoseconds: $(stat -c %y p)"
touch at
touch -a -d "1999-12-31 23:59:59.5" at
stat -c %x at | grep -q "23:59:59.500000000" || fail "atime: $(stat -c %x at)"
before=$(stat -c %Y p)
touch p
[ "$(stat -c %Y p)" -gt "$before" ] || fail "touch did not set mtime to now"

log "truncate"
printf '0123456789' >t
truncate -s 4 t
assert_eq "$(cat t)" 0123 "truncate shrink"
truncate -s 8 t
assert_eq "$(stat -c %s t)" 8 "truncate grow size"
assert_eq "$(od -An -c t | tr -d ' \n')" '0123\0\0\0\0' "grown bytes are zeros"
: >t
assert_eq "$(stat -c %s t)" 0 "O_TRUNC"

log "append"
echo first >ap
echo second >>ap
assert_eq "$(cat ap)" $'first\nsecond' "O_APPEND"

log "unlink of an open file"
seq 1 10000 >open_file
exec 3<open_file
rm open_file
[ ! -e open_file ] || fail "unlinked file still visible"
assert_eq "$(cat <&3 | tail -n 1)" 10000 "read from an unlinked open file"
exec 3<&-

log "symlinks"
ln -s a/b/moved sl
assert_eq "$(readlink sl)" a/b/moved "readlink"
assert_eq "$(cat sl)" one "read through a symlink"
ln -s /nonexistent/target dangling
assert_eq "$(readlink dangling)" /nonexistent/target "dangling symlink"
[ -L dangling ] || fail "not a symlink"

log "special files"
mkfifo fifo
[ -p fifo ] || fail "mkfifo"

log "statfs"
df -P "$MNT" >/dev/null || fail "df"
[ "$(stat -f -c %b "$MNT")" -gt 0 ] || fail "statfs reports no blocks"

log "xattrs"
if command -v setfattr >/dev/null; then
  setfattr -n user.colour -v blue p
  assert_eq "$(getfattr --only-values -n user.colour p)" blue "getxattr"
  setfattr -n user.empty p
  getfattr -d p | grep -q "user.empty" || fail "listxattr misses an empty value"
  setfattr -x user.colour p
  getfattr -n user.colour p 2>/dev/null && fail "removed xattr still there"
  big=$(head -c 3000 /dev/zero | tr '\0' 'z')
  setfattr -n user.big -v "$big" p
  assert_eq "$(getfattr --only-values -n user.big p)" "$big" "3000-byte xattr"
else
  log "setfattr missing: xattr part skipped"
fi

log "directory listing of many entries"
mkdir many
for i in $(seq 1 600); do : >"many/file-with-a-longish-name-$i"; done
assert_eq "$(ls many | wc -l)" 600 "entries listed"
assert_eq "$(ls -l many | grep -c '^-')" 600 "entries listed with attributes"
rm -r many
[ ! -e many ] || fail "rm -r"

log "persistence across remount"
cd /
remount_fs
assert_eq "$(cat "$MNT/a/h3")" data "hard link content after remount"
assert_eq "$(stat -c %h "$MNT/h1")" 2 "nlink after remount"
assert_eq "$(stat -c %a "$MNT/p")" 4751 "mode after remount"
stat -c %x "$MNT/at" | grep -q "23:59:59.500000000" || fail "atime after remount"
assert_eq "$(readlink "$MNT/sl")" a/b/moved "symlink after remount"
assert_eq "$(cat "$MNT/ap")" $'first\nsecond' "appended file after remount"
unmount_fs
log "ok"
