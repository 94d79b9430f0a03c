#!/usr/bin/env bash
# frugalfs fsck: clean after a copy, refused while mounted, a missing
# fragment is a warning, a pack with more than m fragments gone is an error;
# exit status as fsck(8).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" "$@"

# expect STATUS PATTERN CMD...: runs CMD, checks its exit status and that its
# output (stdout+stderr) matches the extended regex PATTERN.
expect() {
  local want=$1 pattern=$2 out rc=0
  shift 2
  out=$("$@" 2>&1) || rc=$?
  [ "$rc" == "$want" ] || fail "'$*' exited $rc, expected $want; output: $out"
  grep -Eq -- "$pattern" <<<"$out" || fail "'$*' output does not match /$pattern/: $out"
  LAST_OUT=$out
}

log "usage"
expect 0 "Usage: frugalfs fsck" "$FRUGALFS" fsck --help
expect 0 "fsck" "$FRUGALFS" --help
expect 16 "META_DIR" "$FRUGALFS" fsck
expect 16 "unknown option" "$FRUGALFS" fsck --bogus "$META"
expect 16 "grace" "$FRUGALFS" fsck --grace soon "$META"
expect 8 "cannot check" "$FRUGALFS" fsck "$WORK/no-such-meta"

SRC=$WORK/src
mkdir -p "$SRC/sub/deeper"
head -c $((3 << 20)) /dev/urandom >"$SRC/random.bin"
seq 1 200000 >"$SRC/sub/numbers.txt"
cp "$SRC/sub/numbers.txt" "$SRC/sub/deeper/same-numbers.txt"
ln "$SRC/random.bin" "$SRC/sub/hardlink.bin"
ln -s ../random.bin "$SRC/sub/symlink"
truncate -s 10M "$SRC/sparse"
echo tail >>"$SRC/sparse"

make_fs
mount_fs
cp -a "$SRC" "$MNT/data"
log "fsck while mounted"
expect 8 "is it mounted" "$FRUGALFS" fsck "$META"
unmount_fs

log "fsck clean"
expect 0 " 0 errors, 0 warnings" "$FRUGALFS" fsck "$META"
log "$(tail -n 1 <<<"$LAST_OUT")"
expect 0 "data verified.* 0 errors, 0 warnings" "$FRUGALFS" fsck --verify-data -v "$META"

# The fragments of one pack, one per volume.
# (A data pack: "frag-8…" to "frag-f…" are metadata backups.)
frag=$(find "${VOLS[0]}" -type f -name 'frag-[0-7]*' | head -n 1)
[ -n "$frag" ] || fail "no fragment on ${VOLS[0]}"
pack=$(basename "$frag" | cut -d- -f2)
mapfile -t frags < <(find "${VOLS[@]}" -type f -name "frag-$pack-*" | sort)
[ "${#frags[@]}" == 4 ] || fail "expected 4 fragments of pack $pack, found ${#frags[@]}"

log "one fragment of pack $pack deleted"
rm "${frags[0]}"
expect 0 "warning: degraded-pack: pack $pack: 1 of 4" "$FRUGALFS" fsck "$META"
expect 0 " 0 errors, 1 warning" "$FRUGALFS" fsck "$META"

log "three fragments of pack $pack deleted"
rm "${frags[1]}" "${frags[2]}"
expect 4 "error: pack-unrecoverable: pack $pack: 3 of 4" "$FRUGALFS" fsck "$META"
expect 4 " 1 error, 0 warnings" "$FRUGALFS" fsck "$META"
