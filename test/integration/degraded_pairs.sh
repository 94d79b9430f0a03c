#!/usr/bin/env bash
# With 2 data + 2 parity fragments, every pair of the four volumes may be
# wiped and all data still reads back; a missing volume directory mounts
# degraded and says so; with three volumes gone there is an error, never
# wrong data.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" "$@"

SRC=$WORK/src
mkdir -p "$SRC/small"
head -c $((8 << 20)) /dev/urandom >"$SRC/big.bin"
seq 1 1000000 >"$SRC/numbers.txt"
for i in $(seq 1 200); do head -c $((RANDOM * 3)) /dev/urandom >"$SRC/small/f$i"; done
cp -a /usr/share/common-licenses "$SRC/licenses" 2>/dev/null || true
log "source: $(tree_bytes "$SRC") bytes"

make_fs
mount_fs
cp -a "$SRC" "$MNT/data"
unmount_fs

# Every round starts from the same saved state of metadata and volumes, so
# whatever a degraded mount writes or repairs cannot leak into the next one.
SAVE=$WORK/save
mkdir -p "$SAVE"
cp -a "$META" "$SAVE/meta"
for i in 0 1 2 3; do cp -a "${VOLS[$i]}" "$SAVE/vol$i"; done
restore() {
  rm -rf "$META" "${VOLS[@]}"
  cp -a "$SAVE/meta" "$META"
  for i in 0 1 2 3; do cp -a "$SAVE/vol$i" "${VOLS[$i]}"; done
}
wipe() { find "$1" -mindepth 1 -delete; }

for pair in "0 1" "0 2" "0 3" "1 2" "1 3" "2 3"; do
  read -r i j <<<"$pair"
  log "volumes $i and $j wiped"
  wipe "${VOLS[$i]}"
  wipe "${VOLS[$j]}"
  mount_fs
  diff -r "$SRC" "$MNT/data" >/dev/null || fail "data differs with volumes $i and $j wiped"
  unmount_fs
  restore
done

log "volume 2 missing entirely"
rm -rf "${VOLS[2]}"
mount_fs
diff -r "$SRC" "$MNT/data" >/dev/null || fail "data differs with volume 2 missing"
grep -Eiq "degraded|offline|missing|unavailable" "$META/frugalfs.log" ||
  fail "the log does not say the mount is degraded"
unmount_fs
restore

log "three volumes wiped"
wipe "${VOLS[0]}"
wipe "${VOLS[1]}"
wipe "${VOLS[3]}"
if out=$("$FRUGALFS" mount "$META" "$MNT" 2>&1); then
  log "mounted anyway; reads must fail"
  if cat "$MNT/data/big.bin" >"$WORK/read.out" 2>"$WORK/read.err"; then
    fail "read big.bin with three of four volumes wiped"
  fi
  grep -q "Input/output error" "$WORK/read.err" || fail "read failed without EIO: $(cat "$WORK/read.err")"
  stop_mount
else
  log "mount refused: $out"
  grep -q "frugalfs mount: " <<<"$out" || fail "unclear mount error: $out"
  is_mounted "$MNT" && fail "refused mount left $MNT mounted"
fi
log "ok"
