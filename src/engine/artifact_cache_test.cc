#include "engine/artifact_cache.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "util/digest.h"

namespace polyrun::engine {
namespace {

namespace fs = std::filesystem;

class ArtifactCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("polyrun-art-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  static std::string Key(const std::string& s) { return Sha256().Add(s).HexDigest(); }
  fs::path dir_;
};

TEST_F(ArtifactCacheTest, StoresAndFindsEveryArtifactByteForByte) {
  auto cache = ArtifactCache::Open(dir_.string(), 1 << 20);
  ASSERT_TRUE(cache) << cache.error().message();
  EXPECT_FALSE(cache->Lookup(Key("a")));
  std::string binary(
      "\x7f"
      "ELF\0\n\n12\n",
      10);
  ASSERT_TRUE(cache->Store(Key("a"), {{"main", binary}, {"main.map", ""}}));
  auto hit = cache->Lookup(Key("a"));
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->size(), 2u);
  EXPECT_EQ(hit->at("main"), binary);
  EXPECT_EQ(hit->at("main.map"), "");
  EXPECT_FALSE(cache->Lookup(Key("b")));
  EXPECT_FALSE(cache->Lookup("../../etc/passwd"));  // keys are hex digests only
}

TEST_F(ArtifactCacheTest, ATruncatedOrForeignEntryIsAMiss) {
  auto cache = ArtifactCache::Open(dir_.string(), 1 << 20);
  ASSERT_TRUE(cache);
  ASSERT_TRUE(cache->Store(Key("a"), {{"main", std::string(1000, 'x')}}));
  fs::path entry = dir_ / (Key("a") + ".art");
  ASSERT_TRUE(fs::exists(entry));
  fs::resize_file(entry, 500);
  EXPECT_FALSE(cache->Lookup(Key("a")));
  std::ofstream(entry, std::ios::trunc) << "not a cache entry";
  EXPECT_FALSE(cache->Lookup(Key("a")));
}

TEST_F(ArtifactCacheTest, EvictsLeastRecentlyUsedBeyondTheBound) {
  // 4 entries of ~90 KiB in a 400 KiB cache: the fifth store evicts the least recently used.
  auto cache = ArtifactCache::Open(dir_.string(), 400 << 10);
  ASSERT_TRUE(cache);
  const std::string blob(90 << 10, 'z');
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(cache->Store(Key(std::to_string(i)), {{"m", blob}}));
  // Age the entries explicitly (mtime is the LRU clock), then touch 0 by a lookup.
  for (int i = 0; i < 4; ++i) {
    fs::last_write_time(dir_ / (Key(std::to_string(i)) + ".art"),
                        fs::file_time_type::clock::now() - std::chrono::hours(10 - i));
  }
  ASSERT_TRUE(cache->Lookup(Key("0")));
  ASSERT_TRUE(cache->Store(Key("4"), {{"m", blob}}));
  EXPECT_LE(cache->TotalBytes(), 400u << 10);
  EXPECT_TRUE(cache->Lookup(Key("0"))) << "recently used: kept";
  EXPECT_FALSE(cache->Lookup(Key("1"))) << "least recently used: evicted";
  EXPECT_TRUE(cache->Lookup(Key("4")));
}

TEST_F(ArtifactCacheTest, RefusesADirectoryOthersCanWrite) {
  fs::create_directories(dir_);
  ::chmod(dir_.c_str(), 0777);
  auto cache = ArtifactCache::Open(dir_.string(), 1 << 20);
  ASSERT_FALSE(cache);
  EXPECT_NE(cache.error().message().find("writable"), std::string::npos) << cache.error().message();
}

TEST_F(ArtifactCacheTest, ZeroSizeTurnsItOff) {
  auto cache = ArtifactCache::Open(dir_.string(), 0);
  ASSERT_TRUE(cache);
  EXPECT_FALSE(cache->enabled());
  ASSERT_TRUE(cache->Store(Key("a"), {{"m", "x"}}));
  EXPECT_FALSE(cache->Lookup(Key("a")));
  EXPECT_FALSE(fs::exists(dir_));
}

TEST_F(ArtifactCacheTest, ConcurrentWritersAndReadersNeverSeeAPartialEntry) {
  auto cache = ArtifactCache::Open(dir_.string(), 64 << 20);
  ASSERT_TRUE(cache);
  const std::string blob(1 << 20, 'q');
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  threads.reserve(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 20; ++i) {
        if (!cache->Store(Key("same"), {{"main", blob}})) ++bad;
        auto hit = cache->Lookup(Key("same"));
        if (hit && hit->at("main") != blob) ++bad;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad.load(), 0);
  ASSERT_TRUE(cache->Lookup(Key("same")));
  size_t leftovers = 0;
  for (const auto& e : fs::directory_iterator(dir_)) {
    leftovers += e.path().string().find(".tmp.") != std::string::npos;
  }
  EXPECT_EQ(leftovers, 0u);
}

}  // namespace
}  // namespace polyrun::engine
