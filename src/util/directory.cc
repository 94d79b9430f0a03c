#include "util/directory.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace frugalfs {

std::filesystem::path normalized_dir(const std::string& dir) {
  std::filesystem::path p = std::filesystem::path(dir).lexically_normal();
  if (!p.has_filename()) p = p.parent_path();  // "dir/"
  return p;
}

Status move_into_place(const std::filesystem::path& from, const std::filesystem::path& to) {
  std::error_code ec;
  std::filesystem::remove(to, ec);  // only succeeds on an empty directory, which may be replaced
  std::filesystem::rename(from, to, ec);
  if (ec) return Errorf(ec.value(), "cannot move {} to {}: {}", from.string(), to.string(), ec.message());
  const std::string parent = to.has_parent_path() ? to.parent_path().string() : ".";
  int fd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Errorf(errno, "cannot sync directory {}", parent);
  Status synced = ::fsync(fd) == 0 ? Status::Ok() : Errorf(errno, "cannot sync directory {}", parent);
  ::close(fd);
  return synced;
}

}  // namespace frugalfs
