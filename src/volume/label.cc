// Volume labels, object-name rules, volume URIs and open_volume. The label
// format is described in doc/volume-format.md.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <map>
#include <system_error>
#include <vector>

#include <fmt/format.h>

#include "frugalfs/hash.h"
#include "frugalfs/volume.h"
#include "volume/file_volume.h"

namespace frugalfs {
namespace {

constexpr std::string_view kFileScheme = "file://";
constexpr std::string_view kLabelMagic = "frugalfs-volume-label v1";
constexpr std::string_view kLabelMagicPrefix = "frugalfs-volume-label v";
constexpr std::string_view kChecksumKey = "checksum=";
constexpr size_t kMaxLabelBytes = 4096;

std::span<const uint8_t> bytes_of(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

bool valid_fs_id(std::string_view id) {
  if (id.empty() || id.size() > 256) return false;
  for (char c : id) {
    if (c < 0x21 || c > 0x7e) return false;  // printable, no space, no newline
  }
  return true;
}

bool parse_u32(std::string_view text, uint32_t* out) {
  if (text.empty()) return false;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && end == text.data() + text.size();
}

bool parse_hex64(std::string_view text, uint64_t* out) {
  if (text.size() != 16) return false;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out, 16);
  return ec == std::errc() && end == text.data() + text.size();
}

// fsync of a directory, so that a new entry in it survives a power loss.
int fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno;
  int err = ::fsync(fd) == 0 ? 0 : errno;
  ::close(fd);
  return err;
}

// mkdir -p that fsyncs the parent of every directory it creates.
Status create_volume_dir(const std::string& uri, const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> missing;
  std::error_code ec;
  for (std::filesystem::path p = dir; !p.empty() && p != p.parent_path(); p = p.parent_path()) {
    if (std::filesystem::exists(p, ec)) break;
    missing.push_back(p);
  }
  for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
    if (::mkdir(it->c_str(), 0755) != 0 && errno != EEXIST) {
      return Errorf(errno, "{}: cannot create the volume directory {}", uri, it->string());
    }
    if (int err = fsync_dir(it->parent_path().string()); err != 0) {
      return Errorf(err, "{}: fsync directory {}", uri, it->parent_path().string());
    }
  }
  return Status::Ok();
}

}  // namespace

bool valid_object_name(std::string_view name) {
  if (name.empty() || name.size() > 200) return false;
  // Directory entries of every file system; they cannot name a file.
  if (name == "." || name == "..") return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

Result<std::vector<uint8_t>> read_object(Volume& volume, std::string_view name) {
  // One read call reads from one version of the object (an object may be
  // replaced concurrently); one spare byte shows whether it grew meanwhile.
  for (int attempt = 0; attempt < 8; ++attempt) {
    FRUGAL_ASSIGN_OR_RETURN(ObjectInfo info, volume.stat(name));
    std::vector<uint8_t> data(static_cast<size_t>(info.size) + 1);
    FRUGAL_ASSIGN_OR_RETURN(size_t n, volume.read(name, 0, data));
    if (n <= info.size) {
      data.resize(n);
      return data;
    }
  }
  return Errorf(EAGAIN, "{}: read {}: the object keeps changing size", volume.uri(), name);
}

Result<std::string> normalize_volume_uri(std::string_view uri) {
  std::string path;
  if (size_t pos = uri.find("://"); pos != std::string_view::npos) {
    std::string_view scheme = uri.substr(0, pos);
    if (uri.starts_with(kFileScheme)) {
      path = std::string(uri.substr(kFileScheme.size()));
      if (path.empty() || path[0] != '/') {
        return Errorf(EINVAL,
                      "volume URI '{}': a file:// URI needs an absolute path, as in "
                      "file:///srv/vol0 (host names are not supported)",
                      uri);
      }
    } else if (scheme == "http" || scheme == "https" || scheme == "s3") {
      return Errorf(EINVAL,
                    "volume URI '{}': remote volumes ({}://) are not supported yet; "
                    "use a local directory (file:///path)",
                    uri, scheme);
    } else {
      return Errorf(EINVAL, "volume URI '{}': unknown scheme '{}' (use file:///path)", uri, scheme);
    }
  } else {
    if (uri.empty()) return Errorf(EINVAL, "empty volume path");
    path = std::string(uri);
  }
  if (path.find('\0') != std::string::npos) {
    return Errorf(EINVAL, "volume URI '{}': contains a NUL byte", uri);
  }
  std::filesystem::path p(path);
  if (p.is_relative()) {
    std::error_code ec;
    std::filesystem::path cwd = std::filesystem::current_path(ec);
    if (ec) return Errorf(ec.value(), "volume path '{}': cannot get the current directory", uri);
    p = cwd / p;
  }
  // Purely lexical: "." and ".." are resolved, symbolic links are not.
  std::string canonical = p.lexically_normal().string();
  while (canonical.size() > 1 && canonical.back() == '/') canonical.pop_back();
  return fmt::format("{}{}", kFileScheme, canonical);
}

Result<std::unique_ptr<Volume>> open_volume(std::string_view uri, bool create) {
  FRUGAL_ASSIGN_OR_RETURN(std::string canonical, normalize_volume_uri(uri));
  const std::string path = canonical.substr(kFileScheme.size());
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    int err = errno;
    if (err != ENOENT) return Errorf(err, "{}: cannot access the volume directory", canonical);
    if (!create) {
      return Errorf(ENOENT, "{}: the volume directory {} does not exist", canonical, path);
    }
    FRUGAL_TRY(create_volume_dir(canonical, path));
    if (::stat(path.c_str(), &st) != 0) {
      return Errorf(errno, "{}: cannot access the volume directory", canonical);
    }
  }
  if (!S_ISDIR(st.st_mode)) {
    return Errorf(ENOTDIR, "{}: {} is not a directory", canonical, path);
  }
  return std::unique_ptr<Volume>(std::make_unique<FileVolume>(path, canonical));
}

Status write_label(Volume& volume, const VolumeLabel& label) {
  if (!valid_fs_id(label.fs_id)) {
    return Errorf(EINVAL, "{}: write label: invalid fs_id '{}'", volume.uri(), label.fs_id);
  }
  std::string text = fmt::format("{}\nfs_id={}\nvolume_id={}\nformat_version={}\n", kLabelMagic,
                                 label.fs_id, label.volume_id, label.format_version);
  text += fmt::format("{}{:016x}\n", kChecksumKey, xxh3_64(bytes_of(text)));
  return volume.put(kVolumeLabelObject, bytes_of(text));
}

Result<VolumeLabel> read_label(Volume& volume) {
  const std::string uri = volume.uri();
  std::vector<uint8_t> buf(kMaxLabelBytes + 1);
  Result<size_t> n = volume.read(kVolumeLabelObject, 0, buf);
  if (!n.ok()) {
    if (n.status().code() == ENOENT) {
      return Errorf(ENOENT, "{}: no volume label (not a formatted frugalfs volume)", uri);
    }
    return n.status().WithContext("read volume label");
  }
  if (*n > kMaxLabelBytes) {
    return Errorf(EINVAL, "{}: the volume label is not a frugalfs label (too large)", uri);
  }
  std::string_view text(reinterpret_cast<const char*>(buf.data()), *n);
  auto bad = [&](std::string_view why) {
    return Errorf(EINVAL, "{}: unreadable volume label: {}", uri, why);
  };

  if (!text.starts_with(kLabelMagicPrefix)) return bad("not a frugalfs volume label");
  if (!text.starts_with(kLabelMagic) || text.substr(kLabelMagic.size(), 1) != "\n") {
    std::string_view version = text.substr(kLabelMagicPrefix.size());
    version = version.substr(0, std::min(version.find('\n'), size_t{16}));
    return bad(fmt::format("label format v{} is not supported (this build reads v1)", version));
  }

  // The last line is "checksum=<xxh3 of everything before it>".
  size_t cpos = text.rfind(fmt::format("\n{}", kChecksumKey));
  if (cpos == std::string_view::npos) return bad("no checksum");
  std::string_view body = text.substr(0, cpos + 1);
  std::string_view tail = text.substr(cpos + 1 + kChecksumKey.size());
  uint64_t want = 0;
  if (tail.size() != 17 || tail.back() != '\n' || !parse_hex64(tail.substr(0, 16), &want)) {
    return bad("malformed checksum line");
  }
  if (xxh3_64(bytes_of(body)) != want) return bad("checksum mismatch");

  std::map<std::string_view, std::string_view> fields;
  std::string_view rest = body.substr(kLabelMagic.size() + 1);
  while (!rest.empty()) {
    size_t eol = rest.find('\n');  // body ends in '\n', so always found
    std::string_view line = rest.substr(0, eol);
    rest = rest.substr(eol + 1);
    size_t eq = line.find('=');
    if (eq == std::string_view::npos || eq == 0)
      return bad(fmt::format("malformed line '{}'", line));
    // Unknown keys are ignored, so that a later writer may add fields.
    if (!fields.emplace(line.substr(0, eq), line.substr(eq + 1)).second) {
      return bad(fmt::format("duplicate key '{}'", line.substr(0, eq)));
    }
  }
  VolumeLabel label;
  auto get = [&](std::string_view key) -> const std::string_view* {
    auto it = fields.find(key);
    return it == fields.end() ? nullptr : &it->second;
  };
  const std::string_view* fs_id = get("fs_id");
  const std::string_view* volume_id = get("volume_id");
  const std::string_view* format_version = get("format_version");
  if (fs_id == nullptr || !valid_fs_id(*fs_id)) return bad("missing or invalid fs_id");
  if (volume_id == nullptr || !parse_u32(*volume_id, &label.volume_id)) {
    return bad("missing or invalid volume_id");
  }
  if (format_version == nullptr || !parse_u32(*format_version, &label.format_version)) {
    return bad("missing or invalid format_version");
  }
  label.fs_id = std::string(*fs_id);
  return label;
}

}  // namespace frugalfs
