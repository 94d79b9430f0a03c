#!/usr/bin/env bash
# ~50 MiB of text (made unique line by line so that dedup cannot explain the
# saving) is stored in less than half its size before erasure coding.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" "$@"

TEXT=$WORK/text
TARGET=$((50 << 20))
log "generate text"
(
  set +o pipefail
  for pass in 1 2 3 4 5 6 7 8; do
    find /usr/include /usr/share/common-licenses -type f -print0 2>/dev/null | sort -z |
      xargs -0 awk -v p="$pass" '{ print p ":" FNR ": " $0 }' 2>/dev/null
  done | head -c "$TARGET" >"$TEXT"
)
logical=$(stat -c %s "$TEXT")
[ "$logical" -gt $((10 << 20)) ] || skip "not enough text on this system ($logical bytes)"

make_fs
base=$(volume_usage)
mount_fs
log "copy $logical bytes in"
split -b 7M -d "$TEXT" "$MNT/part."
unmount_fs
physical=$(( $(volume_usage) - base ))
# 2 data + 2 parity fragments: the bytes stored before coding are half.
stored=$((physical / 2))
log "logical $logical, on volumes $physical, stored before coding $stored" \
  "(ratio $((100 * stored / logical))%)"
[ $((stored * 2)) -lt "$logical" ] || fail "stored $stored bytes for $logical logical: not compressed"
mount_fs
cat "$MNT"/part.* | cmp - "$TEXT" || fail "content differs"
unmount_fs
log "ok"
