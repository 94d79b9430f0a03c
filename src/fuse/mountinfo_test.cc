#include "fuse/mountinfo.h"

#include <doctest/doctest.h>

using namespace frugalfs::fuse;

static constexpr std::string_view kMountinfo =
    "22 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw\n"
    "40 22 0:35 / /mnt/frugal\\040fs rw,nosuid - fuse.frugalfs frugalfs rw\n"
    "41 22 0:36 / /mnt/x rw - tmpfs tmpfs rw\n"
    "42 41 0:37 / /mnt/x rw - fuse.frugalfs frugalfs rw";  // stacked, no final newline

TEST_CASE("find_mount_device finds the topmost mount at a path") {
  CHECK(find_mount_device(kMountinfo, "/") == "8:2");
  CHECK(find_mount_device(kMountinfo, "/mnt/frugal fs") == "0:35");
  CHECK(find_mount_device(kMountinfo, "/mnt/x") == "0:37");
  CHECK_FALSE(find_mount_device(kMountinfo, "/mnt"));
  CHECK_FALSE(find_mount_device(kMountinfo, "/mnt/frugal\\040fs"));
  CHECK_FALSE(find_mount_device("", "/"));
  CHECK_FALSE(find_mount_device("garbage line\n", "/"));
}

TEST_CASE("unescape_mountinfo_path decodes octal escapes only") {
  CHECK(unescape_mountinfo_path("a\\040b\\011c\\134d") == "a b\tc\\d");
  CHECK(unescape_mountinfo_path("trailing\\04") == "trailing\\04");
  CHECK(unescape_mountinfo_path("\\9xx") == "\\9xx");
}
