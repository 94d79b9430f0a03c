// The subcommands of the frugalfs command. Each takes its own argv (argv[0]
// is the subcommand's name) and returns the process exit status: 0 success,
// 1 an operation failed or an input was wrong, 2 a usage error.
#pragma once

namespace frugalfs::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

int cmd_mkfs(int argc, char** argv);
int cmd_mount(int argc, char** argv);
// Exits as fsck(8) does: 0 clean, 4 errors found, 8 operational error, 16 usage.
int cmd_fsck(int argc, char** argv);
int cmd_recover(int argc, char** argv);

}  // namespace frugalfs::cli
