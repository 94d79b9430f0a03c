#!/usr/bin/env bash
# Test it: installs the packages, builds in build-test/ with warnings as
# errors, and runs every unit and integration test. Exits non-zero on any
# failure. The integration tests mount for real, so run it as root:
#   sudo ./tools/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/deps.sh

install_packages
if [ -f build-test/build.ninja ]; then
  echo "build-test: reusing the existing configuration"
else
  meson setup build-test --werror
fi
ninja -C build-test
meson test -C build-test --print-errorlogs "$@"
