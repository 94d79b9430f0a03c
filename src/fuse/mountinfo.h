// Reading /proc/self/mountinfo: is a path a mount point, and which device
// (major:minor) does it carry. Used to refuse mounting on a busy mount point
// and to find the mount's backing device info (bdi) to tune readahead.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace frugalfs::fuse {

// The "major:minor" of the last (topmost) mount at `path` in mountinfo text,
// if any. `path` must be absolute and canonical.
std::optional<std::string> find_mount_device(std::string_view mountinfo, std::string_view path);

// find_mount_device on this process's /proc/self/mountinfo.
std::optional<std::string> mount_device_of(const std::string& path);

// Undoes mountinfo's octal escapes ("\040" for a space).
std::string unescape_mountinfo_path(std::string_view field);

}  // namespace frugalfs::fuse
