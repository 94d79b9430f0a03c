#!/usr/bin/env bash
# Try it: installs the packages, builds into build/, creates a filesystem on
# four local volumes (unless one exists there already) and mounts it:
#   sudo ./tools/setup.sh
# Override the locations with FRUGALFS_HOME (default /var/lib/frugalfs) and
# FRUGALFS_MOUNT (default /mnt/frugalfs).
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/deps.sh

HOME_DIR=${FRUGALFS_HOME:-/var/lib/frugalfs}
MOUNT_DIR=${FRUGALFS_MOUNT:-/mnt/frugalfs}

if [ "$(id -u)" != 0 ]; then
  echo "setup.sh: run it as root (sudo ./tools/setup.sh): it installs packages and mounts" >&2
  exit 1
fi
install_packages
[ -f build/build.ninja ] || meson setup build
ninja -C build
FRUGALFS=$PWD/build/tools/frugalfs

if mountpoint -q "$MOUNT_DIR" 2>/dev/null; then
  echo "$MOUNT_DIR is already mounted:"
  df -h "$MOUNT_DIR"
  exit 0
fi
if [ -d "$HOME_DIR/meta" ]; then
  echo "using the existing filesystem in $HOME_DIR"
else
  "$FRUGALFS" mkfs "$HOME_DIR/meta" "$HOME_DIR/vol0" "$HOME_DIR/vol1" "$HOME_DIR/vol2" \
    "$HOME_DIR/vol3"
fi
mkdir -p "$MOUNT_DIR"
"$FRUGALFS" mount -o allow_other "$HOME_DIR/meta" "$MOUNT_DIR"
echo "mounted on $MOUNT_DIR (log: $HOME_DIR/meta/frugalfs.log; unmount: fusermount3 -u $MOUNT_DIR)"
df -h "$MOUNT_DIR"
