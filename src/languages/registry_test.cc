#include "languages/registry.h"

#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

namespace polyrun::languages {
namespace {

namespace fs = std::filesystem;

TEST(Registry, EveryShippedManifestIsValid) {
  auto reg = Registry::Load(POLYRUN_LANGUAGES_DIR);
  ASSERT_TRUE(reg) << reg.error().message();
  ASSERT_GE(reg->entries().size(), 17u);
  for (const auto& e : reg->entries()) {
    EXPECT_TRUE(e.language) << e.id << ": " << e.problem;
  }
  for (const char* id : {"python", "javascript", "typescript", "ruby", "php", "lua", "r", "perl",
                         "scheme", "bash", "sql", "c", "cpp", "rust", "go", "java", "wasm"}) {
    const auto* e = reg->Find(id);
    ASSERT_NE(e, nullptr) << id;
  }
  EXPECT_EQ(reg->Find("py")->id, "python");
  EXPECT_EQ(reg->Find("JS")->id, "javascript");
  EXPECT_EQ(reg->FindByExtension(".cc")->id, "cpp");
  EXPECT_EQ(reg->Find("cobol-2077"), nullptr);
}

TEST(Registry, BrokenManifestsAreListedWithTheirReasonNotFatal) {
  fs::path dir = fs::temp_directory_path() / ("polyrun-reg-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "good");
  fs::create_directories(dir / "bad");
  fs::create_directories(dir / "missing");
  std::ofstream(dir / "good/manifest.toml") << R"(
id = "good"
extensions = ["good"]
[version]
command = ["/bin/sh", "-c", "echo good 1.2.3"]
pattern = 'good (?P<version>\S+)'
[run]
command = ["/bin/sh", "{entry}"]
)";
  std::ofstream(dir / "bad/manifest.toml") << "id = \"bad\"\nextensions = 3\n";
  std::ofstream(dir / "missing/manifest.toml") << R"(
id = "missing"
extensions = ["miss"]
[version]
command = ["/usr/bin/definitely-not-installed", "--version"]
pattern = '(?P<version>.*)'
[run]
command = ["/usr/bin/definitely-not-installed", "{entry}"]
)";
  auto reg = Registry::Load(dir.string());
  ASSERT_TRUE(reg) << reg.error().message();
  ASSERT_EQ(reg->entries().size(), 3u);
  const auto* good = reg->Find("good");
  ASSERT_TRUE(good);
  EXPECT_TRUE(good->usable) << good->problem;
  EXPECT_EQ(reg->VersionOf("good", ""), "1.2.3");
  const auto* bad = reg->Find("bad");
  ASSERT_TRUE(bad);
  EXPECT_FALSE(bad->usable);
  EXPECT_NE(bad->problem.find("extensions"), std::string::npos) << bad->problem;
  const auto* missing = reg->Find("missing");
  ASSERT_TRUE(missing);
  EXPECT_FALSE(missing->usable);
  EXPECT_NE(missing->problem.find("/usr/bin/definitely-not-installed is not installed"),
            std::string::npos);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace polyrun::languages

namespace polyrun::languages {
namespace {

TEST(Registry, LoadForParsesOnlyTheResolvedLanguageAndRebuildsAStaleIndex) {
  fs::path cache = fs::temp_directory_path() / ("polyrun-idx-" + std::to_string(::getpid()));
  fs::remove_all(cache);
  fs::create_directories(cache);
  // First call builds the index (full load); later calls resolve through it.
  auto first = Registry::LoadFor(POLYRUN_LANGUAGES_DIR, "py", cache.string());
  ASSERT_TRUE(first) << first.error().message();
  EXPECT_GE(first->entries().size(), 5u);
  ASSERT_TRUE(fs::exists(cache / "languages-index.json"));
  for (const auto& [name, id] : {std::pair{"py", "python"}, std::pair{".cc", "cpp"},
                                 std::pair{"javascript", "javascript"}, std::pair{"SH", "bash"}}) {
    auto one = Registry::LoadFor(POLYRUN_LANGUAGES_DIR, name, cache.string());
    ASSERT_TRUE(one) << one.error().message();
    ASSERT_EQ(one->entries().size(), 1u) << name;
    EXPECT_EQ(one->entries()[0].id, id);
    EXPECT_NE(one->Find(name), nullptr) << name;
  }
  // Unknown names fall back to the full registry so errors can list what is known.
  auto unknown = Registry::LoadFor(POLYRUN_LANGUAGES_DIR, "cobol-2077", cache.string());
  ASSERT_TRUE(unknown);
  EXPECT_GE(unknown->entries().size(), 5u);
  // A stale index (wrong stamps) is detected and rebuilt.
  std::ofstream(cache / "languages-index.json") << R"({"dir": "x", "folders": {}})";
  auto rebuilt = Registry::LoadFor(POLYRUN_LANGUAGES_DIR, "py", cache.string());
  ASSERT_TRUE(rebuilt);
  EXPECT_GE(rebuilt->entries().size(), 5u);
  auto again = Registry::LoadFor(POLYRUN_LANGUAGES_DIR, "py", cache.string());
  EXPECT_EQ(again->entries().size(), 1u);
  fs::remove_all(cache);
}

TEST(RunHostProgram, StartsItWithEverySignalAtItsDefaultAndNoneBlocked) {
  // As `polyrun serve` leaves them: SIGPIPE ignored (Sandbox::Create), SIGTERM blocked.
  struct sigaction ignore {
  }, previous{};
  ignore.sa_handler = SIG_IGN;
  ::sigaction(SIGPIPE, &ignore, &previous);
  sigset_t term, old_mask;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  ::pthread_sigmask(SIG_BLOCK, &term, &old_mask);
  auto out = RunHostProgram({"/bin/grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"});
  ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  ::sigaction(SIGPIPE, &previous, nullptr);
  ASSERT_TRUE(out) << out.error().message();
  unsigned long long blocked = 0, ignored = 0;
  ASSERT_EQ(std::sscanf(out->c_str(), "SigBlk: %llx SigIgn: %llx", &blocked, &ignored), 2) << *out;
  EXPECT_EQ(blocked, 0u) << *out;
  // Signals 1-31. glibc reserves 32 and 33 for itself (sigfillset leaves them out), and this
  // process's own parent may have left them ignored: nothing polyrun can set.
  EXPECT_EQ(ignored & 0x7fffffffu, 0u) << *out;
}

}  // namespace
}  // namespace polyrun::languages
