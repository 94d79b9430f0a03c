#include "cli_args.h"

#include <bit>
#include <charconv>
#include <cmath>
#include <limits>

#include <fmt/format.h>

namespace frugalfs::cli {

Result<int64_t> parse_int(std::string_view text, int64_t min, int64_t max) {
  int64_t value = 0;
  const char* end = text.data() + text.size();
  if (!text.empty() && text.front() == '+') text.remove_prefix(1);
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end) {
    return Errorf(EINVAL, "'{}' is not a whole number", text);
  }
  if (value < min || value > max) {
    return Errorf(EINVAL, "{} is out of range ({}..{})", value, min, max);
  }
  return value;
}

Result<uint64_t> parse_size(std::string_view text) {
  std::string_view digits = text;
  uint64_t multiplier = 1;
  // Strip an optional "B" / "iB" after the unit letter.
  std::string_view unit;
  size_t first_alpha = digits.find_first_not_of("0123456789");
  if (first_alpha != std::string_view::npos) {
    unit = digits.substr(first_alpha);
    digits = digits.substr(0, first_alpha);
  }
  if (!unit.empty()) {
    char u = unit.front();
    std::string_view rest = unit.substr(1);
    if (rest != "" && rest != "B" && rest != "iB") {
      return Errorf(EINVAL, "'{}' is not a size (use a number with K, M or G)", text);
    }
    switch (u) {
      case 'k': case 'K': multiplier = 1ull << 10; break;
      case 'm': case 'M': multiplier = 1ull << 20; break;
      case 'g': case 'G': multiplier = 1ull << 30; break;
      case 't': case 'T': multiplier = 1ull << 40; break;
      case 'b': case 'B':
        if (!rest.empty()) return Errorf(EINVAL, "'{}' is not a size (use a number with K, M or G)", text);
        break;
      default:
        return Errorf(EINVAL, "'{}' is not a size (use a number with K, M or G)", text);
    }
  }
  uint64_t value = 0;
  auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (digits.empty() || ec != std::errc() || ptr != digits.data() + digits.size()) {
    return Errorf(EINVAL, "'{}' is not a size (use a number with K, M or G)", text);
  }
  if (value == 0) return Errorf(EINVAL, "size '{}' must not be zero", text);
  if (value > std::numeric_limits<uint64_t>::max() / multiplier) {
    return Errorf(EINVAL, "size '{}' is too large", text);
  }
  return value * multiplier;
}

std::string format_size(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int unit = 0;
  double value = static_cast<double>(bytes);
  while (value >= 1024.0 && unit < 6) {
    value /= 1024.0;
    ++unit;
  }
  if (unit == 0) return fmt::format("{} B", bytes);
  if (value == std::floor(value)) return fmt::format("{:.0f} {}", value, kUnits[unit]);
  return fmt::format("{:.1f} {}", value, kUnits[unit]);
}

Result<int> parse_compress(std::string_view text) {
  if (text == "zstd") return 1;
  if (!text.starts_with("zstd:")) {
    return Errorf(EINVAL, "--compress '{}' is not supported (use zstd:LEVEL, LEVEL {}..{})", text,
                  kMinZstdLevel, kMaxZstdLevel);
  }
  Result<int64_t> level = parse_int(text.substr(5), kMinZstdLevel, kMaxZstdLevel);
  if (!level.ok()) {
    return Errorf(EINVAL, "--compress '{}': the zstd level must be a whole number from {} to {}",
                  text, kMinZstdLevel, kMaxZstdLevel);
  }
  return static_cast<int>(*level);
}

Status check_geometry(int64_t data, int64_t parity, size_t volumes) {
  if (data < 1) return Errorf(EINVAL, "--data must be at least 1 (got {})", data);
  if (parity < 0) return Errorf(EINVAL, "--parity must not be negative (got {})", parity);
  if (data + parity > 255) {
    return Errorf(EINVAL, "--data + --parity must not exceed 255 (got {})", data + parity);
  }
  if (static_cast<uint64_t>(data + parity) > volumes) {
    return Errorf(EINVAL, "{} data + {} parity fragments need at least {} volumes, got {}", data,
                  parity, data + parity, volumes);
  }
  return Status::Ok();
}

Status check_chunk_avg(uint64_t avg) {
  if (avg < kMinChunkAvg || avg > kMaxChunkAvg || !std::has_single_bit(avg)) {
    return Errorf(EINVAL, "--chunk-avg {} must be a power of two from 4K to 4M", format_size(avg));
  }
  return Status::Ok();
}

Status check_pack_size(uint64_t size) {
  if (size < kMinPackSize || size > kMaxPackSize) {
    return Errorf(EINVAL, "--pack-size {} must be between 64K and 1G", format_size(size));
  }
  return Status::Ok();
}

namespace {

Status add_one(std::string_view option, MountOptionList& list) {
  if (option.empty()) return Status::Error(EINVAL, "empty mount option");
  size_t eq = option.find('=');
  std::string_view key = option.substr(0, eq);
  std::string_view value = eq == std::string_view::npos ? std::string_view() : option.substr(eq + 1);
  const bool ours = key == "cache_size" || key == "dirty_limit" || key == "flush_interval" ||
                    key == "threads" || key == "backup_interval" || key == "backups";
  if (!ours) {
    list.fuse_options.emplace_back(option);
    return Status::Ok();
  }
  if (eq == std::string_view::npos || value.empty()) {
    return Errorf(EINVAL, "mount option {} needs a value ({}=...)", key, key);
  }
  if (key == "cache_size" || key == "dirty_limit") {
    Result<uint64_t> size = parse_size(value);
    if (!size.ok()) return size.status().WithContext(fmt::format("mount option {}", key));
    (key == "cache_size" ? list.cache_bytes : list.dirty_bytes_limit) = *size;
    return Status::Ok();
  }
  if (key == "threads") {
    Result<int64_t> n = parse_int(value, 1, 1024);
    if (!n.ok()) return n.status().WithContext("mount option threads");
    list.threads = static_cast<unsigned>(*n);
    return Status::Ok();
  }
  if (key == "backups") {
    Result<int64_t> n = parse_int(value, 1, 1000);
    if (!n.ok()) return n.status().WithContext("mount option backups");
    list.backups = static_cast<unsigned>(*n);
    return Status::Ok();
  }
  // flush_interval, backup_interval: seconds, fractions allowed; a backup
  // interval of 0 means backups only at unmount.
  const bool backup = key == "backup_interval";
  const double most = backup ? 7 * 86400 : 86400;
  double seconds = 0;
  auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
  if (ec != std::errc() || ptr != value.data() + value.size() || !(backup ? seconds >= 0 : seconds > 0) ||
      seconds > most) {
    return Errorf(EINVAL, "mount option {}: '{}' is not a number of seconds ({}0..{})", key, value,
                  backup ? "" : "above ", most);
  }
  (backup ? list.backup_interval_seconds : list.flush_interval_seconds) = seconds;
  return Status::Ok();
}

}  // namespace

Status add_mount_options(std::string_view text, MountOptionList& list) {
  size_t start = 0;
  while (true) {
    size_t comma = text.find(',', start);
    std::string_view option =
        text.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    FRUGAL_TRY(add_one(option, list));
    if (comma == std::string_view::npos) return Status::Ok();
    start = comma + 1;
  }
}

}  // namespace frugalfs::cli
