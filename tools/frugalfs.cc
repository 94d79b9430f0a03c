// The frugalfs command: dispatches to a subcommand.
#include <cstdio>
#include <cstring>
#include <string_view>

#include "commands.h"

namespace {

constexpr const char* kUsage =
    "Usage: frugalfs COMMAND [OPTIONS] [ARGS]\n"
    "\n"
    "Commands:\n"
    "  mkfs    create a filesystem: metadata directory and volumes\n"
    "  mount   mount a filesystem (as a daemon unless -f)\n"
    "  fsck    check an unmounted filesystem\n"
    "  recover rebuild a lost metadata directory from the volumes\n"
    "  help    show this help\n"
    "\n"
    "Run 'frugalfs COMMAND --help' for the options of a command. See frugalfs(8).\n";

}  // namespace

int main(int argc, char** argv) {
  using namespace frugalfs::cli;
  if (argc < 2) {
    fputs(kUsage, stderr);
    return kExitUsage;
  }
  std::string_view command = argv[1];
  if (command == "--help" || command == "-h" || command == "help") {
    fputs(kUsage, stdout);
    return kExitOk;
  }
  if (command == "--version" || command == "-V") {
    printf("frugalfs %s\n", FRUGALFS_VERSION);
    return kExitOk;
  }
  if (command == "mkfs") return cmd_mkfs(argc - 1, argv + 1);
  if (command == "mount") return cmd_mount(argc - 1, argv + 1);
  if (command == "fsck") return cmd_fsck(argc - 1, argv + 1);
  if (command == "recover") return cmd_recover(argc - 1, argv + 1);
  fprintf(stderr, "frugalfs: unknown command '%s'\n\n%s", argv[1], kUsage);
  return kExitUsage;
}
