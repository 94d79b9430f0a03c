#!/usr/bin/env bash
# Wrong input to the frugalfs command gives a clear message and the right
# exit status; help works; a busy filesystem or mount point is refused.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" "$@"

# expect STATUS PATTERN CMD...: runs CMD, checks its exit status and that its
# output (stdout+stderr) matches the extended regex PATTERN.
expect() {
  local want=$1 pattern=$2 out rc=0
  shift 2
  out=$("$@" 2>&1) || rc=$?
  [ "$rc" == "$want" ] || fail "'$*' exited $rc, expected $want; output: $out"
  grep -Eq -- "$pattern" <<<"$out" || fail "'$*' output does not match /$pattern/: $out"
}

log "help and usage"
expect 0 "Usage: frugalfs COMMAND" "$FRUGALFS" --help
expect 0 "Usage: frugalfs COMMAND" "$FRUGALFS" help
expect 0 "Usage: frugalfs mkfs" "$FRUGALFS" mkfs --help
expect 0 "Usage: frugalfs mount" "$FRUGALFS" mount --help
expect 0 "^frugalfs [0-9]" "$FRUGALFS" --version
expect 2 "unknown command" "$FRUGALFS" frobnicate
expect 2 "Usage" "$FRUGALFS"
expect 2 "unknown option" "$FRUGALFS" mkfs --bogus "$META" "${VOLS[@]}"
expect 2 "META_DIR" "$FRUGALFS" mkfs "$META"
expect 2 "MOUNTPOINT" "$FRUGALFS" mount "$META"

log "mkfs input checks"
expect 1 "at least 4 volumes, got 3" "$FRUGALFS" mkfs --data 2 --parity 2 "$META" "${VOLS[@]:0:3}"
expect 1 "data" "$FRUGALFS" mkfs --data 0 "$META" "${VOLS[@]}"
expect 1 "compress" "$FRUGALFS" mkfs --compress lz4 "$META" "${VOLS[@]}"
expect 1 "zstd level" "$FRUGALFS" mkfs --compress zstd:42 "$META" "${VOLS[@]}"
expect 1 "power of two" "$FRUGALFS" mkfs --chunk-avg 48K "$META" "${VOLS[@]}"
expect 1 "not a size" "$FRUGALFS" mkfs --pack-size 4X "$META" "${VOLS[@]}"
[ ! -e "$META" ] || fail "a refused mkfs left $META behind"

expect 0 "created frugalfs filesystem" "$FRUGALFS" mkfs "$META" "${VOLS[@]}"
expect 1 "frugalfs mkfs: " "$FRUGALFS" mkfs "$META" "$WORK/other0" "$WORK/other1" "$WORK/other2" "$WORK/other3"
# A volume that already belongs to a filesystem is refused.
expect 1 "frugalfs mkfs: " "$FRUGALFS" mkfs "$WORK/meta2" "${VOLS[0]}" "$WORK/new1" "$WORK/new2" "$WORK/new3"
[ ! -e "$WORK/meta2/CURRENT" ] || fail "mkfs onto a used volume created metadata"

log "mount input checks"
expect 1 "does not exist" "$FRUGALFS" mount "$WORK/no-such-meta" "$MNT"
expect 1 "does not exist" "$FRUGALFS" mount "$META" "$WORK/no-such-dir"
touch "$WORK/a-file"
expect 1 "not a directory" "$FRUGALFS" mount "$META" "$WORK/a-file"
expect 1 "cache_size" "$FRUGALFS" mount -o cache_size=lots "$META" "$MNT"
expect 1 "nosuchoption" "$FRUGALFS" mount -o nosuchoption "$META" "$MNT"
is_mounted "$MNT" && fail "a refused mount left $MNT mounted"

log "busy checks"
# The refused mounts above must have released the metadata directory.
mount_fs
mkdir -p "$WORK/mnt2"
EXTRA_MOUNTS=("$WORK/mnt2")
expect 1 "in use" "$FRUGALFS" mount "$META" "$WORK/mnt2"
is_mounted "$WORK/mnt2" && fail "a second mount of the same metadata succeeded"
"$FRUGALFS" mkfs "$WORK/meta2" "$WORK/b0" "$WORK/b1" "$WORK/b2" "$WORK/b3" >/dev/null
expect 1 "already a mount point" "$FRUGALFS" mount "$WORK/meta2" "$MNT"
echo hello >"$MNT/hello"
unmount_fs
mount_fs -o cache_size=16M,dirty_limit=16M,flush_interval=2,threads=4
assert_eq "$(cat "$MNT/hello")" "hello" "file content after remount with options"
unmount_fs
log "ok"
