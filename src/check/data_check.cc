// fsck: chunk records, garbage marks, pack records, volumes and their
// fragment objects.
//
// Each volume is listed once ("frag-" objects) instead of asking stat() per
// fragment: one pass per volume gives both the presence and length of every
// fragment a pack names and the orphan fragments no pack names.

#include <algorithm>
#include <charconv>
#include <ctime>
#include <map>
#include <set>
#include <tuple>

#include <fmt/ranges.h>

#include "check/fsck_internal.h"
#include "frugalfs/chunk_store.h"
#include "frugalfs/erasure.h"
#include "frugalfs/volume.h"
#include "stripe/fragment_format.h"

namespace frugalfs::check {

namespace {

constexpr std::string_view kFragmentPrefix = "frag-";

bool parse_fragment_name(std::string_view name, FragmentKey* key) {
  return parse_fragment_object_name(name, &key->pack_id, &key->index);
}

struct PackInfo {
  PackRecord record;
  uint64_t live = 0;  // footprint of chunks with refcount > 0
};

// The fragment index named in one line of PackStore::verify ("... fragment N on ..."), or -1.
int fragment_index_of(std::string_view line) {
  constexpr std::string_view kWord = " fragment ";
  size_t at = line.find(kWord);
  if (at == std::string_view::npos) return -1;
  line.remove_prefix(at + kWord.size());
  int index = -1;
  auto [p, ec] = std::from_chars(line.data(), line.data() + line.size(), index);
  return ec == std::errc() ? index : -1;
}

}  // namespace

Status load_chunks(Checker& c) {
  FRUGAL_TRY(c.meta.list_chunks([&](const ChunkRecord& r) {
    c.chunks[r.id] = ChunkInfo{r.pack_id, r.offset, r.refcount, 0, r.stored_len, r.raw_len, false};
    return true;
  }));
  c.report.chunks = c.chunks.size();
  FRUGAL_TRY(c.meta.list_garbage([&](const Sha256& id) {
    auto it = c.chunks.find(id);
    if (it == c.chunks.end()) {
      c.warn("stale-garbage-mark", "garbage mark for chunk {}, which does not exist", short_id(id));
    } else {
      it->second.garbage = true;
    }
    return true;
  }));
  return Status::Ok();
}

Status check_volumes(Checker& c) {
  std::vector<VolumeRecord> records;
  FRUGAL_TRY(c.meta.list_volumes([&](const VolumeRecord& r) {
    records.push_back(r);
    return true;
  }));
  c.report.volumes = records.size();
  for (const VolumeRecord& r : records) {
    VolumeInfo& info = c.volumes[r.id];
    info.id = r.id;
    info.uri = r.uri;
    auto volume = open_volume(r.uri);
    if (!volume.ok()) {
      c.warn("missing-volume", "volume {} ({}) is unavailable: {}", r.id, r.uri,
             volume.status().message());
      c.volume_set.add(r.id, r.uri, nullptr);
      continue;
    }
    auto label = read_label(**volume);
    if (label.ok()) {
      if (label->fs_id != c.sb.fs_id || label->volume_id != r.id) {
        c.error("volume-label",
                "volume {} ({}) is labelled for filesystem {} as volume {}, not this filesystem "
                "({}) as volume {}; its objects are ignored",
                r.id, r.uri, label->fs_id, label->volume_id, c.sb.fs_id, r.id);
        c.volume_set.add(r.id, r.uri, nullptr);
        continue;
      }
    } else if (label.status().code() != ENOENT) {
      c.warn("missing-volume", "volume {} ({}) is unreadable: {}", r.id, r.uri,
             label.status().message());
      c.volume_set.add(r.id, r.uri, nullptr);
      continue;
    }
    uint64_t others = 0;  // objects that are neither the label nor fragments
    Status listed = (*volume)->list("", [&](const ObjectInfo& o) {
      FragmentKey key;
      if (parse_fragment_name(o.name, &key)) {
        info.fragments[key] = FragmentObject{o.size, o.mtime, false};
      } else if (o.name != kVolumeLabelObject) {
        ++others;
        if (o.name.starts_with(kFragmentPrefix)) {
          c.warn("stray-object", "volume {} ({}): object {} looks like a fragment but its name "
                 "is malformed", r.id, r.uri, o.name);
        }
      }
    });
    if (!listed.ok()) {
      c.warn("missing-volume", "volume {} ({}) cannot be listed: {}", r.id, r.uri,
             listed.message());
      info.fragments.clear();
      c.volume_set.add(r.id, r.uri, nullptr);
      continue;
    }
    if (!label.ok()) {  // ENOENT: no label
      if (!info.fragments.empty() || others > 0) {
        c.error("volume-label", "volume {} ({}) holds objects but no frugalfs label", r.id, r.uri);
      } else {
        c.warn("missing-volume", "volume {} ({}) is empty (wiped or replaced): no label, no "
               "fragments", r.id, r.uri);
      }
      info.fragments.clear();
      c.volume_set.add(r.id, r.uri, nullptr);
      continue;
    }
    info.online = true;
    c.report.fragments += info.fragments.size();
    c.volume_set.add(r.id, r.uri, std::move(*volume));
  }
  return Status::Ok();
}

Status check_chunks_and_packs(Checker& c) {
  std::map<uint64_t, PackInfo> packs;  // few (MiB each) and reported in id order
  FRUGAL_TRY(c.meta.list_packs([&](const PackRecord& r) {
    packs[r.layout.pack_id] = PackInfo{r, 0};
    return true;
  }));
  c.report.packs = packs.size();

  // Chunks: refcount, garbage mark, pack.
  for (const auto& [id, ch] : c.chunks) {
    if (ch.refcount != ch.refs) {
      c.error("refcount", "chunk {}: refcount {}, but {} extents name it", short_id(id),
              ch.refcount, ch.refs);
    }
    if ((ch.refcount == 0) != ch.garbage) {
      c.error("garbage-mark", "chunk {}: refcount {} but {}", short_id(id), ch.refcount,
              ch.garbage ? "marked as garbage" : "no garbage mark");
    }
    auto pack = packs.find(ch.pack_id);
    if (pack == packs.end()) {
      // A chunk whose pack the collector deleted is removed in the same
      // sweep; between the two it is legal if no extent names it.
      c.problem(ch.refcount > 0 ? Severity::kError : Severity::kWarning, "chunk-pack-missing",
                "chunk {} (refcount {}) is in pack {:016x}, which does not exist", short_id(id),
                ch.refcount, ch.pack_id);
      continue;
    }
    if (ch.offset < kPackEntryHeaderSize ||
        ch.offset + ch.stored_len > pack->second.record.layout.pack_len) {
      c.error("chunk-beyond-pack", "chunk {}: bytes [{}, {}) are outside pack {:016x} of {} bytes",
              short_id(id), ch.offset, ch.offset + ch.stored_len, ch.pack_id,
              pack->second.record.layout.pack_len);
    }
    if (ch.refcount > 0) pack->second.live += kPackEntryHeaderSize + uint64_t{ch.stored_len};
  }

  std::unique_ptr<PackStore> verifier;
  if (c.options.verify_data) {
    FRUGAL_ASSIGN_OR_RETURN(auto code,
                            ErasureCode::ReedSolomon(static_cast<int>(c.sb.data_fragments),
                                                     static_cast<int>(c.sb.parity_fragments)));
    verifier = std::make_unique<PackStore>(c.volume_set, std::move(code), c.sb.block_size);
  }

  for (auto& [pack_id, info] : packs) {
    const PackRecord& p = info.record;
    const PackLayout& l = p.layout;
    if (p.live_bytes != info.live) {
      c.error("live-bytes", "pack {:016x}: live_bytes {}, but its live chunks take {}", pack_id,
              p.live_bytes, info.live);
    }
    if (p.live_bytes > p.total_bytes) {
      c.error("live-bytes", "pack {:016x}: live_bytes {} exceeds total_bytes {}", pack_id,
              p.live_bytes, p.total_bytes);
    }
    const size_t n = size_t{l.k} + l.m;
    std::set<uint32_t> distinct(l.volumes.begin(), l.volumes.end());
    bool layout_ok = true;
    auto bad_layout = [&](std::string why) {
      c.error("pack-layout", "pack {:016x}: {}", pack_id, why);
      layout_ok = false;
    };
    if (l.k == 0 || l.block_size == 0) {
      bad_layout(fmt::format("k={} block_size={}", l.k, l.block_size));
    } else if (l.volumes.size() != n || l.fragment_checksums.size() != n) {
      bad_layout(fmt::format("{} volumes and {} fragment checksums for k+m={}", l.volumes.size(),
                             l.fragment_checksums.size(), n));
    } else if (l.fragment_len * l.k < l.pack_len) {
      bad_layout(fmt::format("{} fragments of {} bytes cannot hold {} bytes", l.k, l.fragment_len,
                             l.pack_len));
    }
    if (distinct.size() != l.volumes.size()) {
      bad_layout("two fragments on the same volume");
    }
    for (uint32_t v : distinct) {
      if (!c.volumes.contains(v)) bad_layout(fmt::format("volume {} is not in the volume table", v));
    }
    if (!layout_ok && (l.k == 0 || l.block_size == 0)) continue;

    // Fragments: present, with the length the fragment format gives.
    const uint64_t expected = stripe::fragment_object_size(l);
    std::vector<std::string> missing;  // "i on volume v (why)"
    std::set<int> bad;
    for (size_t i = 0; i < l.volumes.size(); ++i) {
      const uint32_t v = l.volumes[i];
      auto vol = c.volumes.find(v);
      std::string why;
      if (vol == c.volumes.end()) {
        why = "unknown volume";
      } else if (!vol->second.online) {
        why = "volume offline";
      } else {
        auto frag = vol->second.fragments.find(FragmentKey{pack_id, static_cast<uint32_t>(i)});
        if (frag == vol->second.fragments.end()) {
          why = "missing";
        } else {
          frag->second.claimed = true;
          if (frag->second.size != expected) {
            c.error("fragment-length", "pack {:016x}: fragment {} on volume {} ({}) is {} bytes, "
                    "expected {}", pack_id, i, v, vol->second.uri, frag->second.size, expected);
            why = "wrong length";
          }
        }
      }
      if (!why.empty()) {
        missing.push_back(fmt::format("{} on volume {} ({})", i, v, why));
        bad.insert(static_cast<int>(i));
      }
    }

    if (verifier && layout_ok) {
      std::vector<std::string> lines;
      Status s = verifier->verify(l, &lines);
      ++c.report.packs_verified;
      for (const std::string& line : lines) {
        const int index = fragment_index_of(line);
        if (index >= 0 && bad.contains(index)) continue;  // already reported as missing
        if (index >= 0) bad.insert(index);
        c.error("corrupt-fragment", "{}", line);
      }
      if (!s.ok() && missing.empty()) {
        c.error("fragment-unreadable", "pack {:016x}: {}", pack_id, s.message());
      }
    }

    if (!bad.empty()) {
      std::string list = fmt::format("{}", fmt::join(missing, ", "));
      if (bad.size() > missing.size()) {
        list += fmt::format("{}{} corrupt", missing.empty() ? "" : "; ",
                            bad.size() - missing.size());
      }
      if (bad.size() > l.m) {
        c.error("pack-unrecoverable",
                "pack {:016x}: {} of {} fragments unusable, more than the {} parity fragments "
                "(fragments {}): its data is lost",
                pack_id, bad.size(), n, l.m, list);
      } else {
        ++c.report.degraded_packs;
        c.warn("degraded-pack", "pack {:016x}: {} of {} fragments unusable, readable through "
               "parity (fragments {})", pack_id, bad.size(), n, list);
      }
    }
  }

  // Metadata backups (B records) and retired packs (Q records, kept until a
  // backup no longer names them) own their fragments too: never orphans.
  auto claim = [&](const PackRecord& r) {
    for (size_t i = 0; i < r.layout.volumes.size(); ++i) {
      auto vol = c.volumes.find(r.layout.volumes[i]);
      if (vol == c.volumes.end()) continue;
      auto frag = vol->second.fragments.find(FragmentKey{r.layout.pack_id, static_cast<uint32_t>(i)});
      if (frag != vol->second.fragments.end()) frag->second.claimed = true;
    }
    return true;
  };
  FRUGAL_TRY(c.meta.list_backups([&](const PackRecord& r) {
    ++c.report.backups;
    return claim(r);
  }));
  FRUGAL_TRY(c.meta.list_retired([&](const PackRecord& r) {
    ++c.report.retired_packs;
    if (packs.count(r.layout.pack_id)) {
      c.error("retired-pack-in-use", "pack {:016x} is both in use and retired (its fragments would be "
              "removed by the next backup)", r.layout.pack_id);
    }
    return claim(r);
  }));

  // Orphan fragments: on a volume, named by no pack or backup record.
  const int64_t now = static_cast<int64_t>(::time(nullptr));
  std::vector<uint32_t> ids;
  for (const auto& [id, v] : c.volumes) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  for (uint32_t id : ids) {
    const VolumeInfo& v = c.volumes[id];
    std::vector<std::pair<FragmentKey, FragmentObject>> orphans;
    for (const auto& [key, frag] : v.fragments) {
      if (frag.claimed) continue;
      if (now - frag.mtime < c.options.grace_seconds) {
        ++c.report.young_fragments;
        continue;
      }
      orphans.emplace_back(key, frag);
    }
    std::sort(orphans.begin(), orphans.end(), [](const auto& a, const auto& b) {
      return std::tie(a.first.pack_id, a.first.index) < std::tie(b.first.pack_id, b.first.index);
    });
    Volume* volume = c.volume_set.get(id);
    for (const auto& [key, frag] : orphans) {
      const std::string name = fragment_object_name(key.pack_id, static_cast<int>(key.index));
      const std::string what = fmt::format("volume {} ({}): fragment {} ({} bytes, {} s old) is named "
                                           "by no pack", id, v.uri, name, frag.size, now - frag.mtime);
      if (!c.options.repair_orphans || volume == nullptr) {
        c.error("orphan-fragment", "{}", what);
        continue;
      }
      // Safe: every pack record was read without error above (a failed
      // listing returns before this point), and the filesystem is unmounted,
      // so no pack write can be in flight.
      Status removed = volume->remove(name);
      if (removed.ok() || removed.code() == ENOENT) {
        c.problem(Severity::kRepaired, "orphan-fragment", "{}: deleted", what);
      } else {
        c.error("orphan-fragment", "{}; deleting it failed: {}", what, removed.message());
      }
    }
  }
  return Status::Ok();
}

}  // namespace frugalfs::check
