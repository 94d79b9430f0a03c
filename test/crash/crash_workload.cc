// The workload of the crash harness: several writer threads create, append,
// overwrite, truncate, rename, unlink and fsync files on a mount until the
// daemon is killed under them; then, once the harness has remounted, the same
// process checks what survived against what it did.
//
//   crash_workload DIR SEED WRITERS MAX_SECONDS GO_FILE
//
// Phase 1 runs until an operation fails (the daemon is gone) or MAX_SECONDS
// pass; it prints "stopped" with the reason. Phase 2 starts when GO_FILE
// exists (the harness has remounted DIR's filesystem) and checks:
//   - every file whose last completed operation was fsync (or an O_SYNC
//     write) has exactly the contents it had then;
//   - every file holds only zeros or bytes written to that very file at that
//     very offset (never garbage, never another file's data);
//   - names: a completed create, rename or unlink is visible; an operation
//     cut short by the kill may or may not have happened.
// Exit status: 0 all checks passed, 1 a check failed, 2 usage or set-up error.
//
// Data is written in 16-byte records (tag, generation, slot, checksum): a
// record names the file, the write and the place it belongs to, so a byte in
// the wrong place or file is detected without keeping every write.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr uint64_t kSlot = 16;                  // bytes per record
constexpr uint64_t kMaxFileSize = 3 << 20;      // bytes, so the model stays small
constexpr uint64_t kMaxWrite = 256 << 10;       // bytes per write
constexpr int kFilesPerWriter = 6;               // files being changed at once
constexpr int kRetiredPerWriter = 30;            // files fsynced and left alone

uint32_t record_check(uint32_t tag, uint32_t gen, uint32_t slot) {
  uint64_t x = (uint64_t{tag} << 40) ^ (uint64_t{gen} << 20) ^ slot ^ 0x9e3779b97f4a7c15ull;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 29;
  return static_cast<uint32_t>(x) | 1;  // never 0, so a record is never all zeros
}

void encode_record(uint8_t* out, uint32_t tag, uint32_t gen, uint32_t slot) {
  const uint32_t words[4] = {tag, gen, slot, record_check(tag, gen, slot)};
  memcpy(out, words, sizeof words);
}

// What the writers know about one file. Only its writer thread touches it
// during phase 1.
struct FileModel {
  uint32_t tag = 0;
  std::string name;             // relative to DIR, once created
  std::string pending_name;     // a rename in progress when the daemon died
  bool create_done = false;     // the create returned
  bool unlink_started = false;
  bool unlink_done = false;
  bool clean = false;           // last completed operation made it durable
  bool retired = false;         // fsynced and left alone from then on
  uint32_t max_gen = 0;         // generations issued (a write in progress counts)
  uint64_t size = 0;            // after the last completed operation
  std::vector<uint32_t> gens;   // per slot: the generation of its record, 0 = zeros
};

struct Workload {
  std::string dir;
  uint64_t seed = 0;
  int writers = 0;
  double max_seconds = 0;
  std::atomic<bool> stop{false};
  std::mutex mu;                // guards stop_reason and files' vector growth
  std::string stop_reason;
  std::vector<std::unique_ptr<FileModel>> files;
  std::atomic<uint64_t> ops{0}, fsyncs{0};
};

bool daemon_gone(int err) { return err == ENOTCONN || err == ECONNABORTED || err == EIO; }

class Writer {
 public:
  Writer(Workload& w, int id) : w_(w), id_(id), rng_(w.seed * 1000003 + static_cast<uint64_t>(id)) {}

  void run() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(w_.max_seconds);
    const std::string base = w_.dir + "/w" + std::to_string(id_);
    if (!check(mkdir(base.c_str(), 0755) == 0 || errno == EEXIST, "mkdir " + base)) return;
    if (!check(mkdir((base + "/d").c_str(), 0755) == 0 || errno == EEXIST, "mkdir " + base + "/d")) return;
    while (!w_.stop && std::chrono::steady_clock::now() < deadline) {
      if (!step()) return;
      ++w_.ops;
    }
  }

 private:
  // Records the first failure; a failure after the daemon died is expected.
  bool check(bool ok, const std::string& what) {
    if (ok) return true;
    const int err = errno;
    std::lock_guard lock(w_.mu);
    if (w_.stop_reason.empty()) {
      w_.stop_reason = what + ": " + strerror(err) + (daemon_gone(err) ? " (daemon gone)" : " (UNEXPECTED)");
    }
    w_.stop = true;
    return false;
  }

  std::vector<FileModel*> live() {
    std::vector<FileModel*> out;
    for (FileModel* f : mine_) {
      if (!f->unlink_started && !f->retired) out.push_back(f);
    }
    return out;
  }

  std::string fresh_name(const FileModel& f) {
    const bool in_subdir = rng_() % 2 == 0;
    return "w" + std::to_string(id_) + (in_subdir ? "/d/" : "/") + "f" + std::to_string(f.tag) + "_" +
           std::to_string(renames_++);
  }

  bool step() {
    std::vector<FileModel*> files = live();
    const unsigned roll = static_cast<unsigned>(rng_() % 100);
    if (files.empty() || (files.size() < kFilesPerWriter && roll < 8)) return create();
    FileModel& f = *files[rng_() % files.size()];
    if (roll < 30) return write(f, f.size, 1 + rng_() % (kMaxWrite / kSlot), /*sync=*/false);  // append
    if (roll < 55) {
      const uint64_t slots = f.size / kSlot + 1;
      return write(f, rng_() % slots * kSlot, 1 + rng_() % (kMaxWrite / kSlot / 4), false);
    }
    if (roll < 60) return write(f, rng_() % (f.size / kSlot + 1) * kSlot, 1 + rng_() % 64, /*sync=*/true);
    if (roll < 67) return truncate(f);
    if (roll < 74) return rename(f);
    if (roll < 78) return unlink(f);
    if (roll < 80 && retired_ < kRetiredPerWriter) {
      // Fsynced and never touched again: what a crash must not change.
      f.retired = true;
      ++retired_;
      return fsync(f, false);
    }
    return fsync(f, roll < 88);
  }

  std::string path(const std::string& name) const { return w_.dir + "/" + name; }

  bool create() {
    auto owned = std::make_unique<FileModel>();
    FileModel* f = owned.get();
    {
      std::lock_guard lock(w_.mu);
      f->tag = static_cast<uint32_t>(w_.files.size() + 1);
      w_.files.push_back(std::move(owned));
    }
    mine_.push_back(f);
    f->name = fresh_name(*f);
    int fd = open(path(f->name).c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644);
    if (!check(fd >= 0, "create " + f->name)) return false;
    f->create_done = true;
    close(fd);
    return write(*f, 0, 1 + rng_() % (kMaxWrite / kSlot), false);
  }

  bool write(FileModel& f, uint64_t offset, uint64_t slots, bool sync) {
    slots = std::min(slots, (kMaxFileSize - std::min(offset, kMaxFileSize)) / kSlot);
    if (slots == 0) return truncate(f);
    const uint32_t gen = ++f.max_gen;
    buf_.resize(slots * kSlot);
    const uint32_t first = static_cast<uint32_t>(offset / kSlot);
    for (uint64_t i = 0; i < slots; ++i) encode_record(&buf_[i * kSlot], f.tag, gen, first + static_cast<uint32_t>(i));
    f.clean = false;
    int fd = open(path(f.name).c_str(), O_WRONLY | (sync ? O_SYNC : 0));
    if (!check(fd >= 0, "open " + f.name)) return false;
    ssize_t n = pwrite(fd, buf_.data(), buf_.size(), static_cast<off_t>(offset));
    if (n != static_cast<ssize_t>(buf_.size())) {
      if (n >= 0) errno = EIO;
      close(fd);
      return check(false, "write " + f.name);
    }
    if (!check(close(fd) == 0, "close " + f.name)) return false;
    if (f.gens.size() < first + slots) f.gens.resize(first + slots, 0);
    for (uint64_t i = 0; i < slots; ++i) f.gens[first + i] = gen;
    f.size = std::max(f.size, offset + buf_.size());
    f.clean = sync;
    if (sync) ++w_.fsyncs;
    return true;
  }

  bool truncate(FileModel& f) {
    const uint64_t size = rng_() % (kMaxFileSize / kSlot / (rng_() % 2 ? 8 : 1)) * kSlot;
    f.clean = false;
    if (!check(::truncate(path(f.name).c_str(), static_cast<off_t>(size)) == 0, "truncate " + f.name)) return false;
    f.gens.resize(size / kSlot, 0);  // slots beyond the old size read as zeros
    f.size = size;
    return true;
  }

  bool rename(FileModel& f) {
    f.pending_name = fresh_name(f);
    if (!check(::rename(path(f.name).c_str(), path(f.pending_name).c_str()) == 0, "rename " + f.name)) return false;
    f.name = f.pending_name;
    f.pending_name.clear();
    return true;
  }

  bool unlink(FileModel& f) {
    f.unlink_started = true;
    if (!check(::unlink(path(f.name).c_str()) == 0, "unlink " + f.name)) return false;
    f.unlink_done = true;
    f.gens = {};  // keeps the model small
    return true;
  }

  bool fsync(FileModel& f, bool data_only) {
    int fd = open(path(f.name).c_str(), O_RDONLY);
    if (!check(fd >= 0, "open " + f.name)) return false;
    if (!check((data_only ? fdatasync(fd) : ::fsync(fd)) == 0, "fsync " + f.name)) {
      close(fd);
      return false;
    }
    close(fd);
    f.clean = true;
    ++w_.fsyncs;
    return true;
  }

  Workload& w_;
  const int id_;
  std::mt19937_64 rng_;
  std::vector<FileModel*> mine_;
  std::vector<uint8_t> buf_;
  uint64_t renames_ = 0;
  int retired_ = 0;
};

// Phase 2 ----------------------------------------------------------------

struct Verifier {
  const Workload& w;
  int failures = 0;
  std::map<uint32_t, std::vector<std::string>> found;  // tag -> names found

  void fail(const std::string& message) {
    if (++failures <= 20) fprintf(stderr, "crash_workload: FAIL: %s\n", message.c_str());
  }

  void scan() {
    std::error_code ec;
    for (auto it = std::filesystem::recursive_directory_iterator(w.dir, ec);
         !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
      if (!it->is_regular_file()) continue;
      const std::string rel = std::filesystem::relative(it->path(), w.dir).string();
      const std::string leaf = it->path().filename().string();
      unsigned tag = 0;
      if (sscanf(leaf.c_str(), "f%u_", &tag) != 1 || tag == 0 || tag > w.files.size()) {
        fail("unexpected file " + rel);
        continue;
      }
      found[tag].push_back(rel);
    }
    if (ec) fail("cannot walk " + w.dir + ": " + ec.message());
  }

  void check_names(const FileModel& f) {
    const auto it = found.find(f.tag);
    const std::vector<std::string> names = it == found.end() ? std::vector<std::string>{} : it->second;
    const std::string label = "file " + std::to_string(f.tag);
    if (names.size() > 1) fail(label + " has " + std::to_string(names.size()) + " names");
    if (f.unlink_done) {
      if (!names.empty()) fail(label + " was unlinked but is still " + names[0]);
      return;
    }
    if (names.empty()) {
      if (f.create_done && !f.unlink_started) fail(label + " (" + f.name + ") was created but is gone");
      return;
    }
    const std::string& name = names[0];
    if (name != f.name && name != f.pending_name) fail(label + " is " + name + ", expected " + f.name);
  }

  void check_contents(const FileModel& f, const std::string& rel) {
    const std::string label = "file " + std::to_string(f.tag) + " (" + rel + ")";
    int fd = open((w.dir + "/" + rel).c_str(), O_RDONLY);
    if (fd < 0) return fail(label + ": open: " + strerror(errno));
    std::vector<uint8_t> data(kMaxFileSize + kSlot);
    ssize_t n = pread(fd, data.data(), data.size(), 0);
    struct stat st {};
    const bool stat_ok = fstat(fd, &st) == 0;
    close(fd);
    if (n < 0 || !stat_ok) return fail(label + ": read: " + strerror(errno));
    const uint64_t size = static_cast<uint64_t>(n);
    if (static_cast<uint64_t>(st.st_size) != size) fail(label + ": stat size " + std::to_string(st.st_size) +
                                                        " but read " + std::to_string(size) + " bytes");
    if (f.clean && size != f.size) {
      fail(label + ": fsynced at " + std::to_string(f.size) + " bytes, now " + std::to_string(size));
    }
    for (uint64_t off = 0; off < size; off += kSlot) {
      const uint32_t slot = static_cast<uint32_t>(off / kSlot);
      const uint64_t len = std::min(kSlot, size - off);
      uint8_t expect[kSlot] = {};
      uint32_t words[4] = {};
      memcpy(words, &data[off], len);
      const bool zero = std::all_of(&data[off], &data[off] + len, [](uint8_t b) { return b == 0; });
      if (f.clean) {
        const uint32_t gen = slot < f.gens.size() ? f.gens[slot] : 0;
        if (gen != 0) encode_record(expect, f.tag, gen, slot);
        if (memcmp(expect, &data[off], len) != 0) {
          return fail(label + ": fsynced contents differ at offset " + std::to_string(off) + " (expected " +
                      (gen ? "generation " + std::to_string(gen) : "zeros") + ", found " +
                      (zero ? "zeros" : "tag " + std::to_string(words[0]) + " gen " + std::to_string(words[1]) +
                                            " slot " + std::to_string(words[2])) + ")");
        }
        continue;
      }
      if (zero) continue;
      const bool valid = len == kSlot && words[0] == f.tag && words[2] == slot && words[1] >= 1 &&
                         words[1] <= f.max_gen && words[3] == record_check(words[0], words[1], words[2]);
      if (!valid) {
        return fail(label + ": bytes never written to this file at offset " + std::to_string(off) + " (tag " +
                    std::to_string(words[0]) + " gen " + std::to_string(words[1]) + " slot " +
                    std::to_string(words[2]) + ")");
      }
    }
  }

  int run() {
    scan();
    for (const auto& f : w.files) {
      check_names(*f);
      const auto it = found.find(f->tag);
      if (it != found.end()) check_contents(*f, it->second[0]);
    }
    size_t clean = 0;
    for (const auto& f : w.files) clean += f->clean && !f->unlink_started ? 1 : 0;
    printf("crash_workload: checked %zu files (%zu fsynced and unchanged since): %d failures\n", w.files.size(),
           clean, failures);
    return failures == 0 ? 0 : 1;
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: crash_workload DIR SEED WRITERS MAX_SECONDS GO_FILE\n");
    return 2;
  }
  Workload w;
  w.dir = argv[1];
  w.seed = strtoull(argv[2], nullptr, 10);
  w.writers = atoi(argv[3]);
  w.max_seconds = atof(argv[4]);
  const std::string go_file = argv[5];
  if (w.writers < 1 || w.writers > 64 || w.max_seconds <= 0) {
    fprintf(stderr, "crash_workload: bad WRITERS or MAX_SECONDS\n");
    return 2;
  }

  std::vector<std::thread> threads;
  std::vector<std::unique_ptr<Writer>> writers;
  for (int i = 0; i < w.writers; ++i) writers.push_back(std::make_unique<Writer>(w, i));
  for (auto& writer : writers) threads.emplace_back([&writer] { writer->run(); });
  for (auto& t : threads) t.join();
  printf("crash_workload: stopped after %llu operations (%llu fsyncs): %s\n",
         static_cast<unsigned long long>(w.ops.load()), static_cast<unsigned long long>(w.fsyncs.load()),
         w.stop_reason.empty() ? "time limit" : w.stop_reason.c_str());
  fflush(stdout);
  if (w.stop_reason.find("UNEXPECTED") != std::string::npos) return 1;

  // Wait (bounded) for the harness to remount.
  for (int i = 0; i < 3000 && access(go_file.c_str(), F_OK) != 0; ++i) usleep(50000);
  if (access(go_file.c_str(), F_OK) != 0) {
    fprintf(stderr, "crash_workload: %s never appeared\n", go_file.c_str());
    return 2;
  }
  Verifier verifier{w, 0, {}};
  return verifier.run();
}
