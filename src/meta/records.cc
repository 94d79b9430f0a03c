#include "meta/records.h"

#include <cstring>
#include <limits>

namespace frugalfs::meta_records {
namespace {

// Appends little-endian fields.
class Writer {
 public:
  explicit Writer(size_t reserve) {
    out_.reserve(reserve);
    out_.push_back(static_cast<char>(kRecordVersion));
  }
  template <typename T>
  void put(T v) {
    static_assert(std::is_integral_v<T>);
    using U = std::make_unsigned_t<T>;
    U u = static_cast<U>(v);
    for (size_t i = 0; i < sizeof(T); ++i) out_.push_back(static_cast<char>((u >> (8 * i)) & 0xff));
  }
  void bytes(std::string_view b) { out_.append(b); }
  // u32 length, then the bytes.
  void str(std::string_view s) {
    put(static_cast<uint32_t>(s.size()));
    bytes(s);
  }
  void sha(const Sha256& id) { bytes({reinterpret_cast<const char*>(id.data()), id.size()}); }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

// Reads little-endian fields; a read past the end sets an error instead.
class Reader {
 public:
  Reader(const char* kind, std::string_view value) : kind_(kind), in_(value) {
    if (in_.empty()) {
      fail("empty value");
      return;
    }
    auto version = static_cast<uint8_t>(in_[0]);
    if (version != kRecordVersion) {
      fail(fmt::format("unknown record version {}", version));
      return;
    }
    pos_ = 1;
  }

  template <typename T>
  T get() {
    static_assert(std::is_integral_v<T>);
    if (!need(sizeof(T))) return T{};
    using U = std::make_unsigned_t<T>;
    U u = 0;
    for (size_t i = 0; i < sizeof(T); ++i) u |= static_cast<U>(static_cast<uint8_t>(in_[pos_ + i])) << (8 * i);
    pos_ += sizeof(T);
    return static_cast<T>(u);
  }
  std::string str() {
    auto n = get<uint32_t>();
    if (!need(n)) return {};
    std::string s(in_.substr(pos_, n));
    pos_ += n;
    return s;
  }
  std::string rest() {
    std::string s(in_.substr(std::min(pos_, in_.size())));
    pos_ = in_.size();
    return s;
  }
  Sha256 sha() {
    Sha256 id{};
    if (!need(id.size())) return id;
    std::memcpy(id.data(), in_.data() + pos_, id.size());
    pos_ += id.size();
    return id;
  }
  void fail(std::string why) {
    if (error_.empty()) error_ = std::move(why);
  }
  // Ok when every field was read and nothing is left over.
  Status finish() {
    if (error_.empty() && pos_ != in_.size()) fail(fmt::format("{} trailing bytes", in_.size() - pos_));
    if (error_.empty()) return Status::Ok();
    return Errorf(EIO, "corrupt metadata record {}: {}", kind_, error_);
  }

 private:
  bool need(size_t n) {
    if (!error_.empty()) return false;
    if (in_.size() - pos_ < n) {
      fail(fmt::format("truncated ({} bytes)", in_.size()));
      pos_ = in_.size();
      return false;
    }
    return true;
  }

  const char* kind_;
  std::string_view in_;
  size_t pos_ = 0;
  std::string error_;
};

}  // namespace

std::string encode_superblock(const Superblock& sb) {
  Writer w(64 + sb.fs_id.size());
  w.put(sb.format_version);
  w.put(sb.data_fragments);
  w.put(sb.parity_fragments);
  w.put(sb.chunker.min_size);
  w.put(sb.chunker.avg_size);
  w.put(sb.chunker.max_size);
  w.put(sb.compress_level);
  w.put(sb.pack_size);
  w.put(sb.block_size);
  w.put(sb.created_ns);
  w.str(sb.fs_id);
  return w.take();
}

Result<Superblock> decode_superblock(std::string_view value) {
  Reader r("superblock", value);
  Superblock sb;
  sb.format_version = r.get<uint32_t>();
  sb.data_fragments = r.get<uint32_t>();
  sb.parity_fragments = r.get<uint32_t>();
  sb.chunker.min_size = r.get<uint32_t>();
  sb.chunker.avg_size = r.get<uint32_t>();
  sb.chunker.max_size = r.get<uint32_t>();
  sb.compress_level = r.get<int32_t>();
  sb.pack_size = r.get<uint32_t>();
  sb.block_size = r.get<uint32_t>();
  sb.created_ns = r.get<int64_t>();
  sb.fs_id = r.str();
  FRUGAL_TRY(r.finish());
  return sb;
}

std::string encode_counter(uint64_t value) {
  Writer w(9);
  w.put(value);
  return w.take();
}

Result<uint64_t> decode_counter(std::string_view value) {
  Reader r("counter", value);
  auto v = r.get<uint64_t>();
  FRUGAL_TRY(r.finish());
  return v;
}

std::string encode_volume(const VolumeRecord& volume) {
  Writer w(5 + volume.uri.size());
  w.str(volume.uri);
  return w.take();
}

Result<VolumeRecord> decode_volume(uint32_t id, std::string_view value) {
  Reader r("volume", value);
  VolumeRecord v;
  v.id = id;
  v.uri = r.str();
  FRUGAL_TRY(r.finish());
  return v;
}

std::string encode_inode(const InodeRecord& inode) {
  Writer w(80 + inode.symlink_target.size());
  w.put(inode.mode);
  w.put(inode.uid);
  w.put(inode.gid);
  w.put(inode.nlink);
  w.put(inode.rdev);
  w.put(inode.size);
  w.put(inode.atime_ns);
  w.put(inode.mtime_ns);
  w.put(inode.ctime_ns);
  w.put(inode.generation);
  w.put(inode.data_bytes);
  w.put(inode.parent);
  w.str(inode.symlink_target);
  return w.take();
}

Result<InodeRecord> decode_inode(uint64_t ino, std::string_view value) {
  Reader r("inode", value);
  InodeRecord in;
  in.ino = ino;
  in.mode = r.get<uint32_t>();
  in.uid = r.get<uint32_t>();
  in.gid = r.get<uint32_t>();
  in.nlink = r.get<uint32_t>();
  in.rdev = r.get<uint64_t>();
  in.size = r.get<uint64_t>();
  in.atime_ns = r.get<int64_t>();
  in.mtime_ns = r.get<int64_t>();
  in.ctime_ns = r.get<int64_t>();
  in.generation = r.get<uint64_t>();
  in.data_bytes = r.get<uint64_t>();
  in.parent = r.get<uint64_t>();
  in.symlink_target = r.str();
  FRUGAL_TRY(r.finish());
  return in;
}

std::string encode_dentry(const DirEntry& entry) {
  Writer w(21);
  w.put(entry.ino);
  w.put(entry.type);
  w.put(entry.cookie);
  return w.take();
}

Result<DirEntry> decode_dentry(std::string_view name, std::string_view value) {
  Reader r("dentry", value);
  DirEntry e;
  e.name = std::string(name);
  e.ino = r.get<uint64_t>();
  e.type = r.get<uint32_t>();
  e.cookie = r.get<uint64_t>();
  FRUGAL_TRY(r.finish());
  return e;
}

std::string encode_readdir(const DirEntry& entry) {
  Writer w(13 + entry.name.size());
  w.put(entry.ino);
  w.put(entry.type);
  w.bytes(entry.name);
  return w.take();
}

Result<DirEntry> decode_readdir(uint64_t cookie, std::string_view value) {
  Reader r("readdir", value);
  DirEntry e;
  e.cookie = cookie;
  e.ino = r.get<uint64_t>();
  e.type = r.get<uint32_t>();
  e.name = r.rest();
  FRUGAL_TRY(r.finish());
  return e;
}

std::string encode_extent(const Extent& extent) {
  Writer w(41);
  w.put(extent.length);
  w.put(extent.chunk_offset);
  w.sha(extent.chunk);
  return w.take();
}

Result<Extent> decode_extent(uint64_t end, std::string_view value) {
  Reader r("extent", value);
  Extent e;
  e.length = r.get<uint32_t>();
  e.chunk_offset = r.get<uint32_t>();
  e.chunk = r.sha();
  if (e.length > end) r.fail(fmt::format("length {} exceeds end {}", e.length, end));
  FRUGAL_TRY(r.finish());
  e.file_offset = end - e.length;
  return e;
}

std::string encode_chunk(const ChunkRecord& chunk) {
  Writer w(42);
  w.put(chunk.pack_id);
  w.put(chunk.offset);
  w.put(chunk.stored_len);
  w.put(chunk.raw_len);
  w.put(static_cast<uint8_t>(chunk.codec));
  w.put(chunk.checksum);
  w.put(chunk.refcount);
  return w.take();
}

Result<ChunkRecord> decode_chunk(const Sha256& id, std::string_view value) {
  Reader r("chunk", value);
  ChunkRecord c;
  c.id = id;
  c.pack_id = r.get<uint64_t>();
  c.offset = r.get<uint64_t>();
  c.stored_len = r.get<uint32_t>();
  c.raw_len = r.get<uint32_t>();
  auto codec = r.get<uint8_t>();
  if (codec > static_cast<uint8_t>(Codec::kZstd)) r.fail(fmt::format("unknown codec {}", codec));
  c.codec = static_cast<Codec>(codec);
  c.checksum = r.get<uint64_t>();
  c.refcount = r.get<uint64_t>();
  FRUGAL_TRY(r.finish());
  return c;
}

std::string encode_pack(const PackRecord& pack) {
  const PackLayout& l = pack.layout;
  Writer w(64 + 4 * l.volumes.size() + 8 * l.fragment_checksums.size());
  w.put(l.k);
  w.put(l.m);
  w.put(l.block_size);
  w.put(l.pack_len);
  w.put(l.fragment_len);
  // k+m <= 255 + 255, so u16 counts always fit.
  w.put(static_cast<uint16_t>(l.volumes.size()));
  for (uint32_t v : l.volumes) w.put(v);
  w.put(static_cast<uint16_t>(l.fragment_checksums.size()));
  for (uint64_t c : l.fragment_checksums) w.put(c);
  w.put(pack.total_bytes);
  w.put(pack.live_bytes);
  w.put(pack.created_ns);
  return w.take();
}

Result<PackRecord> decode_pack(uint64_t pack_id, std::string_view value) {
  Reader r("pack", value);
  PackRecord p;
  PackLayout& l = p.layout;
  l.pack_id = pack_id;
  l.k = r.get<uint8_t>();
  l.m = r.get<uint8_t>();
  l.block_size = r.get<uint32_t>();
  l.pack_len = r.get<uint64_t>();
  l.fragment_len = r.get<uint64_t>();
  // Counts are checked against the bytes left before anything is allocated.
  auto nvol = r.get<uint16_t>();
  if (nvol > value.size() / 4) {
    r.fail(fmt::format("{} volumes", nvol));
  } else {
    for (uint16_t i = 0; i < nvol; ++i) l.volumes.push_back(r.get<uint32_t>());
  }
  auto nsum = r.get<uint16_t>();
  if (nsum > value.size() / 8) {
    r.fail(fmt::format("{} checksums", nsum));
  } else {
    for (uint16_t i = 0; i < nsum; ++i) l.fragment_checksums.push_back(r.get<uint64_t>());
  }
  p.total_bytes = r.get<uint64_t>();
  p.live_bytes = r.get<uint64_t>();
  p.created_ns = r.get<int64_t>();
  FRUGAL_TRY(r.finish());
  return p;
}

std::string encode_xattr(std::string_view value) {
  Writer w(1 + value.size());
  w.bytes(value);
  return w.take();
}

Result<std::string> decode_xattr(std::string_view value) {
  Reader r("xattr", value);
  std::string v = r.rest();
  FRUGAL_TRY(r.finish());
  return v;
}

std::string encode_orphan() { return Writer(1).take(); }

Status decode_orphan(std::string_view value) { return Reader("orphan", value).finish(); }

}  // namespace frugalfs::meta_records
