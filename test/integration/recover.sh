#!/usr/bin/env bash
# The metadata directory is lost: frugalfs recover rebuilds it from the
# volumes alone (the newest metadata backup, written at unmount), the
# recovered filesystem passes fsck and holds the same tree byte for byte;
# the same with one volume missing; packs written after the backup are
# taken in, so fsck stays clean; bad input is refused with a clear message.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" "$@"

SRC=${TREE_SRC:-/usr/include}
[ -d "$SRC" ] || skip "$SRC is missing"

make_fs
mount_fs
log "cp -a $SRC ($(find "$SRC" | wc -l) entries, $(tree_bytes "$SRC") bytes)"
cp -a "$SRC" "$MNT/tree"
echo "small file" > "$MNT/note"
unmount_fs  # writes the metadata backup
cp -a "$META" "$WORK/meta.orig"

# --- usage errors and refusals
"$FRUGALFS" recover --help | grep -q "Usage: frugalfs recover" || fail "recover --help"
set +e
"$FRUGALFS" recover "${VOLS[@]}" >/dev/null 2>"$WORK/err"; rc=$?
set -e
[ $rc = 2 ] && grep -q -- "--meta" "$WORK/err" || fail "recover without --meta: rc $rc, $(cat "$WORK/err")"
set +e
"$FRUGALFS" recover --meta "$META" "${VOLS[@]}" >/dev/null 2>"$WORK/err"; rc=$?
set -e
[ $rc = 1 ] && grep -q "already holds" "$WORK/err" || fail "recover over a database: rc $rc, $(cat "$WORK/err")"
set +e
"$FRUGALFS" recover --meta "$WORK/nowhere" "$WORK/not-a-volume" >/dev/null 2>"$WORK/err"; rc=$?
set -e
[ $rc = 1 ] && grep -q "none of the given volumes" "$WORK/err" || fail "recover from no volume: rc $rc, $(cat "$WORK/err")"
[ ! -e "$WORK/nowhere/CURRENT" ] || fail "a failed recover left a database"

# --- the metadata directory is lost; recover from all four volumes
rm -rf "$META"
start=$(date +%s%N)
"$FRUGALFS" recover --meta "$META" --volumes "$(IFS=,; echo "${VOLS[*]}")" >"$WORK/out" 2>&1 ||
  fail "recover failed: $(cat "$WORK/out")"
ms=$((($(date +%s%N) - start) / 1000000))
elapsed=$((ms / 1000)).$(printf '%03d' $((ms % 1000)))
log "recovered $(tree_bytes "$SRC") bytes / $(find "$SRC" | wc -l) entries in ${elapsed} s:"
sed 's/^/    /' "$WORK/out"
"$FRUGALFS" fsck "$META" >"$WORK/fsck" 2>&1 || fail "fsck after recover: $(tail -5 "$WORK/fsck")"
mount_fs
diff -r --no-dereference "$SRC" "$MNT/tree" >/dev/null || fail "the recovered tree differs from $SRC"
[ "$(cat "$MNT/note")" = "small file" ] || fail "the recovered small file differs"
log "recovered tree: diff -r clean"
# The recovered filesystem takes writes and is backed up again.
cp "$MNT/note" "$MNT/note2"
unmount_fs

# --- recover with one volume missing (the fourth volume's disk died too)
rm -rf "$META"
mv "${VOLS[3]}" "$WORK/vol3.away"
"$FRUGALFS" recover --meta "$META" "${VOLS[0]}" "${VOLS[1]}" "${VOLS[2]}" >"$WORK/out" 2>&1 ||
  fail "recover with a volume missing failed: $(cat "$WORK/out")"
grep -q "missing 3" "$WORK/out" || fail "recover did not report the missing volume: $(cat "$WORK/out")"
log "recovered with volume 3 missing:"
sed 's/^/    /' "$WORK/out"
out=$("$FRUGALFS" fsck "$META" 2>&1) || fail "fsck after degraded recover: $(echo "$out" | tail -5)"
mount_fs
diff -r --no-dereference "$SRC" "$MNT/tree" >/dev/null || fail "the tree recovered without volume 3 differs"
[ "$(cat "$MNT/note2")" = "small file" ] || fail "note2 differs"
log "recovered without volume 3: diff -r clean"
FSCK_AFTER_UNMOUNT=0 unmount_fs  # degraded: fsck warns, checked below
mv "$WORK/vol3.away" "${VOLS[3]}"

# --- writes after the last backup: the daemon dies with the metadata disk.
# The flushes written since carry manifests, so recover replays them: files
# of the backup come back changed, new files come back in /lost+found.
rm -rf "$META"
"$FRUGALFS" recover --meta "$META" "${VOLS[@]}" >/dev/null 2>&1 || fail "recover (third time) failed"
mount_fs
cp -a "$SRC" "$WORK/expect-tree"
head -c 3000000 /dev/urandom > "$WORK/late"
cp "$WORK/late" "$MNT/late"
sync "$MNT/late" || fail "sync (fsync) of $MNT/late"
victim=$(cd "$SRC" && find . -type f -size +20k | LC_ALL=C sort | sed -n 1p)
[ -n "$victim" ] || fail "no file over 20 KiB in $SRC"
# Overwrite the middle of a file of the backup, and append to another.
printf 'OVERWRITTEN-AFTER-THE-BACKUP' | dd of="$MNT/tree/$victim" bs=1 seek=10000 conv=notrunc status=none
printf 'OVERWRITTEN-AFTER-THE-BACKUP' | dd of="$WORK/expect-tree/$victim" bs=1 seek=10000 conv=notrunc status=none
echo "appended after the backup" >> "$MNT/note"
sync "$MNT/tree/$victim" "$MNT/note" || fail "sync of the changed files"
kill -9 "$(daemon_pid)"
detach "$MNT" || umount -l "$MNT"
rm -rf "$META"
"$FRUGALFS" recover --meta "$META" "${VOLS[@]}" >"$WORK/out" 2>&1 || fail "recover after a crash failed: $(cat "$WORK/out")"
log "recovered after writes since the backup:"
sed 's/^/    /' "$WORK/out"
grep -Eq "[1-9][0-9]* written after it taken in" "$WORK/out" ||
  fail "the packs written after the backup were not taken in: $(cat "$WORK/out")"
out=$("$FRUGALFS" fsck "$META" 2>&1) || fail "fsck after replaying later writes: $(echo "$out" | tail -5)"
mount_fs
diff -r --no-dereference "$WORK/expect-tree" "$MNT/tree" >/dev/null ||
  fail "the tree differs after replay: $(diff -r --no-dereference "$WORK/expect-tree" "$MNT/tree" 2>&1 | head -3)"
printf 'small file\nappended after the backup\n' | cmp -s - "$MNT/note" || fail "the append to note was not replayed: $(cat "$MNT/note")"
found=$(find "$MNT/lost+found" -type f -name '#*')
[ "$(echo "$found" | wc -l)" = 1 ] || fail "expected one file in lost+found, found: $found"
cmp -s "$WORK/late" "$found" || fail "the file created after the backup ($found) differs"
log "replayed: overwrite, append, and a new file ($found)"
unmount_fs
log "ok"
