// Directories built aside and moved into place in one step, durably: what
// an interrupted build leaves behind never sits where a complete one would.
#pragma once

#include <filesystem>
#include <string>

#include "frugalfs/status.h"

namespace frugalfs {

// dir without a trailing separator ("a/b/" -> "a/b"), lexically normalised.
std::filesystem::path normalized_dir(const std::string& dir);

// Renames directory `from` to `to`, which must not exist or be an empty
// directory, then fsyncs the parent of `to` so that the move survives a
// power loss. On failure `from` is left as it was.
Status move_into_place(const std::filesystem::path& from, const std::filesystem::path& to);

}  // namespace frugalfs
