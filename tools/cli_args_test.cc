#include "cli_args.h"

#include <doctest/doctest.h>

using namespace frugalfs;
using namespace frugalfs::cli;

TEST_CASE("parse_size takes binary suffixes and rejects the rest") {
  CHECK(*parse_size("4096") == 4096);
  CHECK(*parse_size("64K") == 64 << 10);
  CHECK(*parse_size("64k") == 64 << 10);
  CHECK(*parse_size("4M") == 4 << 20);
  CHECK(*parse_size("4MiB") == 4 << 20);
  CHECK(*parse_size("2G") == 2ull << 30);
  CHECK(*parse_size("100B") == 100);
  for (const char* bad : {"", "K", "0", "-1", "1.5M", "4 M", "4X", "4MM", "4Mb ", "99999999999999999999",
                          "20000000000G"}) {
    CAPTURE(bad);
    Result<uint64_t> r = parse_size(bad);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == EINVAL);
  }
}

TEST_CASE("format_size prints binary units") {
  CHECK(format_size(100) == "100 B");
  CHECK(format_size(64 << 10) == "64 KiB");
  CHECK(format_size(4 << 20) == "4 MiB");
  CHECK(format_size(3ull << 29) == "1.5 GiB");
}

TEST_CASE("parse_compress accepts zstd levels -7..19") {
  CHECK(*parse_compress("zstd") == 1);
  CHECK(*parse_compress("zstd:3") == 3);
  CHECK(*parse_compress("zstd:-7") == -7);
  CHECK(*parse_compress("zstd:19") == 19);
  for (const char* bad : {"zstd:20", "zstd:-8", "zstd:", "zstd:x", "lz4", "lz4:1", "zstd:1.5"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_compress(bad).ok());
  }
}

TEST_CASE("check_geometry says how many volumes are needed") {
  CHECK(check_geometry(2, 2, 4).ok());
  CHECK(check_geometry(1, 0, 1).ok());
  Status s = check_geometry(2, 2, 3);
  REQUIRE_FALSE(s.ok());
  CHECK(s.message().find("at least 4 volumes") != std::string::npos);
  CHECK(s.message().find("got 3") != std::string::npos);
  CHECK_FALSE(check_geometry(0, 2, 4).ok());
  CHECK_FALSE(check_geometry(2, -1, 4).ok());
  CHECK_FALSE(check_geometry(200, 100, 400).ok());
}

TEST_CASE("chunk averages are powers of two from 4K to 4M; packs 64K..1G") {
  CHECK(check_chunk_avg(4096).ok());
  CHECK(check_chunk_avg(64 << 10).ok());
  CHECK(check_chunk_avg(4 << 20).ok());
  CHECK_FALSE(check_chunk_avg(2048).ok());
  CHECK_FALSE(check_chunk_avg(8 << 20).ok());
  CHECK_FALSE(check_chunk_avg(48 << 10).ok());
  CHECK(check_pack_size(4 << 20).ok());
  CHECK_FALSE(check_pack_size(4096).ok());
  CHECK_FALSE(check_pack_size(2ull << 30).ok());
}

TEST_CASE("mount options: frugalfs's own are taken out, the rest go to FUSE") {
  MountOptionList list;
  REQUIRE(add_mount_options("allow_other,cache_size=64M,ro", list).ok());
  REQUIRE(add_mount_options("dirty_limit=1G,flush_interval=0.5,threads=4", list).ok());
  CHECK(list.fuse_options == std::vector<std::string>{"allow_other", "ro"});
  CHECK(list.cache_bytes == 64ull << 20);
  CHECK(list.dirty_bytes_limit == 1ull << 30);
  CHECK(list.flush_interval_seconds == 0.5);
  CHECK(list.threads == 4);
  CHECK(list.backup_interval_seconds == 3600);
  CHECK(list.backups == 3);
  REQUIRE(add_mount_options("backup_interval=0,backups=7", list).ok());
  CHECK(list.backup_interval_seconds == 0);
  CHECK(list.backups == 7);
  CHECK(list.fuse_options.size() == 2);

  for (const char* bad : {"cache_size", "cache_size=", "cache_size=lots", "threads=0",
                          "threads=x", "flush_interval=-1", "flush_interval=abc", "ro,,rw",
                          "flush_interval=0", "backup_interval=-1", "backup_interval=1e9", "backups=0",
                          "backups=", "backup_interval"}) {
    CAPTURE(bad);
    MountOptionList l;
    CHECK_FALSE(add_mount_options(bad, l).ok());
  }
}
