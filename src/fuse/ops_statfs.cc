// statfs: the capacity the fs advertises (thin provisioning is its business).
#include <sys/statvfs.h>

#include "fuse/ops.h"

namespace frugalfs::fuse {

void op_statfs(fuse_req_t req, fuse_ino_t /*ino*/) {
  guarded(req, "statfs", [&] {
    Result<FsStats> stats = fs_of(req).statfs();
    if (!stats.ok()) return reply_status(req, stats.status());
    struct statvfs st {};
    st.f_bsize = stats->block_size;
    st.f_frsize = stats->block_size;
    st.f_blocks = stats->total_blocks;
    st.f_bfree = stats->free_blocks;
    st.f_bavail = stats->available_blocks;
    st.f_files = stats->total_files;
    st.f_ffree = stats->free_files;
    st.f_favail = stats->free_files;
    st.f_namemax = stats->name_max;
    fuse_reply_statfs(req, &st);
  });
}

}  // namespace frugalfs::fuse
