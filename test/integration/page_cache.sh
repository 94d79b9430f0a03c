#!/usr/bin/env bash
# The kernel keeps a file's pages in its page cache from one open to the next,
# so a re-read comes from memory; and what it keeps never goes stale. After
# overwrites through another handle, truncates, an O_TRUNC rewrite, a rename
# over the file, writes through a hard link and a new file under the old
# name, reads give the reference bytes, before and after a remount.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" "$@"

REF=$WORK/reference
# compare: the mounted file $1 holds the bytes of the reference $2.
compare() { cmp "$2" "$MNT/$1" || fail "$1 differs from its reference ($3)"; }
# cache_all: reads the mounted file $1 through, and asserts that all its
# pages are then in the page cache, seen from a new open.
cache_all() {
  cat "$MNT/$1" >/dev/null
  local resident total
  read -r resident total < <("$IO_TOOL" cached "$MNT/$1") || fail "io_tool cached $1 failed"
  [ "$total" -gt 0 ] || fail "$1 has no pages"
  assert_eq "$resident" "$total" "pages of $1 cached after a read, seen from a new open"
}

head -c $((4 << 20)) /dev/urandom >"$REF"
make_fs
mount_fs
cp "$REF" "$MNT/a"
log "re-reads come from the page cache"
cache_all a
compare a "$REF" "cached re-read"

log "overwrites through another handle"
"$IO_TOOL" overwrite 11 300 $((64 << 10)) "$REF" "$MNT/a" || fail "overwrites failed"
compare a "$REF" "after overwrites"
cache_all a

log "truncate down, then up: the tail reads as zeros"
truncate -s 1000001 "$REF" "$MNT/a"
compare a "$REF" "after truncate down"
cache_all a
truncate -s $((3 << 20)) "$REF" "$MNT/a"
compare a "$REF" "after truncate up"

log "an O_TRUNC rewrite with shorter data"
cache_all a
head -c 100000 /dev/urandom >"$REF"
cat "$REF" >"$MNT/a"
compare a "$REF" "after an O_TRUNC rewrite"

log "a rename over a cached file"
head -c $((2 << 20)) /dev/urandom >"$WORK/b"
cp "$WORK/b" "$MNT/b"
cache_all a
mv "$MNT/b" "$MNT/a"
cp "$WORK/b" "$REF"
compare a "$REF" "after a rename over it"

log "writes through a hard link"
ln "$MNT/a" "$MNT/link"
cache_all a
"$IO_TOOL" overwrite 12 100 $((64 << 10)) "$REF" "$MNT/link" || fail "overwrites failed"
compare a "$REF" "after writes through a hard link"

log "a new file under a cached file's name"
cache_all a
rm "$MNT/a" "$MNT/link"
head -c $((1 << 20)) /dev/urandom >"$REF"
cp "$REF" "$MNT/a"
compare a "$REF" "new file under the old name"

log "compare after remount"
remount_fs
compare a "$REF" "after remount"
unmount_fs
log "ok"
