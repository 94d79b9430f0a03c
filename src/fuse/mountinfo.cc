#include "fuse/mountinfo.h"

#include <fstream>
#include <sstream>
#include <vector>

namespace frugalfs::fuse {

std::string unescape_mountinfo_path(std::string_view field) {
  std::string out;
  out.reserve(field.size());
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      const char a = field[i + 1], b = field[i + 2], c = field[i + 3];
      if (a >= '0' && a <= '3' && b >= '0' && b <= '7' && c >= '0' && c <= '7') {
        out.push_back(static_cast<char>((a - '0') * 64 + (b - '0') * 8 + (c - '0')));
        i += 3;
        continue;
      }
    }
    out.push_back(field[i]);
  }
  return out;
}

std::optional<std::string> find_mount_device(std::string_view mountinfo, std::string_view path) {
  // Each line: ID PARENT_ID MAJOR:MINOR ROOT MOUNT_POINT OPTIONS ... - TYPE SOURCE SUPER_OPTIONS
  std::optional<std::string> found;
  size_t start = 0;
  while (start < mountinfo.size()) {
    size_t end = mountinfo.find('\n', start);
    if (end == std::string_view::npos) end = mountinfo.size();
    std::string_view line = mountinfo.substr(start, end - start);
    start = end + 1;

    std::vector<std::string_view> fields;
    size_t pos = 0;
    while (fields.size() < 5 && pos < line.size()) {
      size_t space = line.find(' ', pos);
      if (space == std::string_view::npos) space = line.size();
      fields.push_back(line.substr(pos, space - pos));
      pos = space + 1;
    }
    if (fields.size() < 5) continue;
    if (unescape_mountinfo_path(fields[4]) == path) found = std::string(fields[2]);
  }
  return found;
}

std::optional<std::string> mount_device_of(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  if (!in) return std::nullopt;
  std::stringstream text;
  text << in.rdbuf();
  return find_mount_device(text.str(), path);
}

}  // namespace frugalfs::fuse
