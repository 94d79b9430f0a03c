// Crash-harness helper: after the daemon was killed, makes a volume look as a
// power loss could have left it, from the event log of power_loss_shim:
// every directory change (mkdir, create, rename, unlink) not followed by an
// fsync of that directory (or a syncfs of the volume) is undone, newest
// first, and every file whose data was not fsynced since it was created
// (nor the volume synced) loses its data.
//
//   power_loss_apply LOG
// Prints what it undid; exits 1 on a malformed log or a failed undo.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

struct Op {
  char kind;          // M, C, R, U
  std::string a, b;   // M/C: path; R: from, to; U: path, grave
  std::set<std::string> unsynced_dirs;  // durable once each is fsynced after the op
};

std::string parent(const std::string& p) { return fs::path(p).parent_path().string(); }

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: power_loss_apply LOG\n");
    return 2;
  }
  std::ifstream in(argv[1]);
  std::vector<Op> ops;
  std::set<std::string> unsynced_data;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    Op op;
    std::string kind;
    words >> kind >> op.a;
    if (kind.size() != 1 || op.a.empty()) {
      std::fprintf(stderr, "power_loss_apply: bad line '%s'\n", line.c_str());
      return 1;
    }
    op.kind = kind[0];
    switch (op.kind) {
      case 'S':
        for (Op& o : ops) o.unsynced_dirs.erase(op.a);
        unsynced_data.erase(op.a);
        continue;
      case 'Y':  // syncfs: every change so far is durable
        for (Op& o : ops) o.unsynced_dirs.clear();
        unsynced_data.clear();
        continue;
      case 'M':
      case 'C':
        op.unsynced_dirs = {parent(op.a)};
        if (op.kind == 'C') unsynced_data.insert(op.a);
        break;
      case 'R':
      case 'U':
        words >> op.b;
        if (op.b.empty()) {
          std::fprintf(stderr, "power_loss_apply: bad line '%s'\n", line.c_str());
          return 1;
        }
        op.unsynced_dirs = {parent(op.a)};
        if (op.kind == 'R') {
          op.unsynced_dirs.insert(parent(op.b));
          if (unsynced_data.erase(op.a)) unsynced_data.insert(op.b);
        } else {
          unsynced_data.erase(op.a);
        }
        break;
      default:
        std::fprintf(stderr, "power_loss_apply: bad line '%s'\n", line.c_str());
        return 1;
    }
    ops.push_back(op);
  }
  size_t undone = 0, emptied = 0;
  std::error_code ec;
  for (auto it = ops.rbegin(); it != ops.rend(); ++it) {
    if (it->unsynced_dirs.empty()) continue;
    ++undone;
    switch (it->kind) {
      case 'M':
        fs::remove_all(it->a, ec);
        break;
      case 'C':
        fs::remove(it->a, ec);
        break;
      case 'R':  // the file is back under its old name
        if (fs::exists(it->b)) fs::rename(it->b, it->a, ec);
        break;
      case 'U':  // the unlinked file is back
        if (fs::exists(it->b) && fs::exists(parent(it->a))) fs::rename(it->b, it->a, ec);
        break;
    }
    if (ec) {
      std::fprintf(stderr, "power_loss_apply: undoing %c %s: %s\n", it->kind, it->a.c_str(), ec.message().c_str());
      return 1;
    }
  }
  for (const std::string& p : unsynced_data) {
    if (fs::is_regular_file(p)) {
      fs::resize_file(p, 0, ec);
      ++emptied;
    }
  }
  std::printf("power loss: %zu of %zu directory changes undone, %zu files lost their unsynced data\n", undone,
              ops.size(), emptied);
  return 0;
}
