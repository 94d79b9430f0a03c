// Opening the volumes of a filesystem at mount time, checking their labels.
#pragma once

#include <functional>
#include <string_view>

#include "frugalfs/meta.h"
#include "frugalfs/status.h"
#include "frugalfs/stripe.h"

namespace frugalfs {

// Adds every volume recorded in meta to `volumes`. A missing or unreadable
// volume, or a wiped one (an empty directory, which is labelled again), is
// taken degraded with a log line; more than m of them is EIO. A volume
// labelled for another filesystem or with another id is EINVAL.
Status attach_volumes(MetaStore& meta, VolumeSet& volumes,
                      const std::function<void(std::string_view)>& log);

}  // namespace frugalfs
