#include "frugalfs/status.h"

#include <cstring>

namespace frugalfs {

Status Status::Error(int code, std::string message) {
  assert(code != 0 && "an error needs a non-zero errno value");
  return Status(code == 0 ? EIO : code, std::move(message));
}

std::string Status::ToString() const {
  if (ok()) return "ok";
  return fmt::format("{}: {}", message_, std::strerror(code_));
}

Status Status::WithContext(std::string_view prefix) const {
  if (ok()) return *this;
  return Status(code_, fmt::format("{}: {}", prefix, message_));
}

}  // namespace frugalfs
