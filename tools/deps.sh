# Sourced by setup.sh and test.sh: installs the Debian packages frugalfs
# needs to build and to run its tests, unless they are all installed already.
FRUGALFS_PACKAGES=(
  meson ninja-build pkg-config g++
  libfuse3-dev fuse3 librocksdb-dev libgflags-dev libsnappy-dev zlib1g-dev libbz2-dev liblz4-dev
  libzstd-dev libxxhash-dev
  libjerasure-dev libgf-complete-dev libssl-dev libfmt-dev doctest-dev
  rsync attr acl diffutils util-linux mount coreutils findutils
)

as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    echo "$0: needs root for: $*" >&2
    return 1
  fi
}

install_packages() {
  local missing=() p
  for p in "${FRUGALFS_PACKAGES[@]}"; do
    dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "packages: all installed"
    return 0
  fi
  echo "packages: installing ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "${missing[@]}" </dev/null
}
