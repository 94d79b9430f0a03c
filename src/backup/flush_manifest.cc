// The flush manifest: what a flush wrote, by file, stored in its last pack.
// Layout (little-endian): magic "FMAN" u32, version u32, file count u32, then
// per file: ino u64, mode u32, uid u32, gid u32, size u64, mtime_ns i64,
// region count u32, extent count u32, regions (start u64, end u64), extents
// (file_offset u64, length u32, chunk [32], chunk_offset u32).

#include <cstring>

#include "frugalfs/backup.h"
#include "util/little_endian.h"

namespace frugalfs {

namespace {

constexpr uint32_t kManifestMagic = 0x4e414d46;  // "FMAN"
constexpr uint32_t kManifestVersion = 1;

class Writer {
 public:
  void u32(uint32_t v) { put(v); }
  void u64(uint64_t v) { put(v); }
  void bytes(std::span<const uint8_t> b) { out_.insert(out_.end(), b.begin(), b.end()); }
  std::vector<uint8_t> take() { return std::move(out_); }

 private:
  template <typename T>
  void put(T v) {
    uint8_t b[sizeof(T)];
    store_le(b, v);
    out_.insert(out_.end(), b, b + sizeof(T));
  }
  std::vector<uint8_t> out_;
};

class Reader {
 public:
  explicit Reader(std::span<const uint8_t> in) : in_(in) {}
  bool u32(uint32_t* v) { return get(v); }
  bool u64(uint64_t* v) { return get(v); }
  bool bytes(std::span<uint8_t> out) {
    if (in_.size() - pos_ < out.size()) return false;
    std::memcpy(out.data(), in_.data() + pos_, out.size());
    pos_ += out.size();
    return true;
  }
  bool done() const { return pos_ == in_.size(); }
  size_t left() const { return in_.size() - pos_; }

 private:
  template <typename T>
  bool get(T* v) {
    if (in_.size() - pos_ < sizeof(T)) return false;
    *v = load_le<T>(in_.data() + pos_);
    pos_ += sizeof(T);
    return true;
  }
  std::span<const uint8_t> in_;
  size_t pos_ = 0;
};

}  // namespace

std::vector<uint8_t> encode_flush_manifest(const FlushManifest& manifest) {
  Writer w;
  w.u32(kManifestMagic);
  w.u32(kManifestVersion);
  w.u32(static_cast<uint32_t>(manifest.files.size()));
  for (const FlushManifest::File& f : manifest.files) {
    w.u64(f.ino);
    w.u32(f.mode);
    w.u32(f.uid);
    w.u32(f.gid);
    w.u64(f.size);
    w.u64(static_cast<uint64_t>(f.mtime_ns));
    w.u32(static_cast<uint32_t>(f.regions.size()));
    w.u32(static_cast<uint32_t>(f.extents.size()));
    for (const auto& r : f.regions) {
      w.u64(r.start);
      w.u64(r.end);
    }
    for (const Extent& e : f.extents) {
      w.u64(e.file_offset);
      w.u32(e.length);
      w.bytes(e.chunk);
      w.u32(e.chunk_offset);
    }
  }
  return w.take();
}

Result<FlushManifest> decode_flush_manifest(std::span<const uint8_t> bytes) {
  Reader r(bytes);
  uint32_t magic = 0, version = 0, files = 0;
  if (!r.u32(&magic) || magic != kManifestMagic) return Errorf(EINVAL, "not a flush manifest");
  if (!r.u32(&version) || version != kManifestVersion) {
    return Errorf(EINVAL, "flush manifest version {} is unknown", version);
  }
  if (!r.u32(&files)) return Errorf(EINVAL, "flush manifest: truncated");
  FlushManifest m;
  constexpr size_t kFileBytes = 8 + 4 * 3 + 8 + 8 + 4 + 4;
  constexpr size_t kRegionBytes = 16, kExtentBytes = 8 + 4 + 32 + 4;
  if (files > r.left() / kFileBytes) return Errorf(EINVAL, "flush manifest: file count {} too large", files);
  m.files.resize(files);
  for (FlushManifest::File& f : m.files) {
    uint64_t mtime = 0;
    uint32_t regions = 0, extents = 0;
    if (!r.u64(&f.ino) || !r.u32(&f.mode) || !r.u32(&f.uid) || !r.u32(&f.gid) || !r.u64(&f.size) ||
        !r.u64(&mtime) || !r.u32(&regions) || !r.u32(&extents) ||
        uint64_t{regions} * kRegionBytes + uint64_t{extents} * kExtentBytes > r.left()) {
      return Errorf(EINVAL, "flush manifest: truncated file entry");
    }
    f.mtime_ns = static_cast<int64_t>(mtime);
    f.regions.resize(regions);
    f.extents.resize(extents);
    uint64_t prev_end = 0;
    for (auto& reg : f.regions) {
      r.u64(&reg.start);
      r.u64(&reg.end);
      if (reg.start >= reg.end || reg.start < prev_end) return Errorf(EINVAL, "flush manifest: bad region");
      prev_end = reg.end;
    }
    prev_end = 0;
    size_t region = 0;
    for (Extent& e : f.extents) {
      r.u64(&e.file_offset);
      r.u32(&e.length);
      r.bytes(e.chunk);
      r.u32(&e.chunk_offset);
      while (region < f.regions.size() && f.regions[region].end <= e.file_offset) ++region;
      if (e.length == 0 || e.file_offset > UINT64_MAX - e.length || e.file_offset < prev_end ||
          region == f.regions.size() ||
          e.file_offset < f.regions[region].start || e.end() > f.regions[region].end) {
        return Errorf(EINVAL, "flush manifest: extent at {} of inode {} is outside its regions", e.file_offset,
                      f.ino);
      }
      prev_end = e.end();
    }
  }
  if (!r.done()) return Errorf(EINVAL, "flush manifest: {} trailing bytes", r.left());
  return m;
}

}  // namespace frugalfs
