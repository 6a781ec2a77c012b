// The CLI contract: exit codes, streaming, language detection and one-line errors.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "polyrun_process.h"

namespace polyrun::testing {
namespace {

using nlohmann::json;

// `polyrun kernel run` executes polyrun-kernel (src/cli/kernel_main.cc) with its flags, the
// global ones and the limits included: each one's error comes back from that program.
TEST(Cli, KernelRunHandsEveryFlagToTheKernelProgram) {
  auto limit = RunPolyrun(
      {"kernel", "run", "--language", "python", "-f", "/nonexistent/c.json", "--memory", "lots"});
  EXPECT_EQ(limit.exit_code, 2) << limit.err;
  EXPECT_NE(limit.err.find("polyrun kernel run: memory: invalid size \"lots\""), std::string::npos)
      << limit.err;
  auto dir = RunPolyrun({"--languages-dir", "/nonexistent-languages", "kernel", "run", "--language",
                         "python", "-f", "/nonexistent/c.json"});
  EXPECT_NE(dir.exit_code, 0);
  EXPECT_NE(dir.err.find("/nonexistent-languages"), std::string::npos) << dir.err;
  auto file = RunPolyrun(
      {"kernel", "run", "--language", "python", "-f", "/nonexistent/c.json", "--memory", "64MB"});
  EXPECT_NE(file.exit_code, 0);
  EXPECT_NE(file.err.find("connection file /nonexistent/c.json"), std::string::npos) << file.err;
}

TEST(Cli, StreamsOutputAndPassesTheExitCodeThrough) {
  auto p = RunPolyrun({"run", "-l", "python", "-c",
                       "import sys; print('out'); print('err', file=sys.stderr); sys.exit(7)"});
  EXPECT_EQ(p.exit_code, 7);
  EXPECT_EQ(p.out, "out\n");
  EXPECT_EQ(p.err, "err\n");
}

TEST(Cli, SignalExitIs128PlusSignal) {
  auto p = RunPolyrun({"run", "-l", "bash", "-c", "kill -SEGV $$"});
  EXPECT_EQ(p.exit_code, 128 + 11) << p.err;
}

TEST(Cli, LanguageFromTheFirstFilesExtension) {
  TempDir dir;
  dir.Write("hello.js", "console.log('from a file')\n");
  auto p = RunPolyrun({"run", "hello.js"}, dir.path());
  EXPECT_EQ(p.exit_code, 0) << p.err;
  EXPECT_EQ(p.out, "from a file\n");
}

TEST(Cli, CodeFromStdinWithDash) {
  auto p = RunPolyrun({"run", "-l", "python", "-"}, "", "print(6 * 7)\n");
  EXPECT_EQ(p.exit_code, 0) << p.err;
  EXPECT_EQ(p.out, "42\n");
}

TEST(Cli, FileRunReadsTheTerminalsStdin) {
  TempDir dir;
  dir.Write("echo.py", "print(input().upper())\n");
  auto p = RunPolyrun({"run", "echo.py"}, dir.path(), "shout\n");
  EXPECT_EQ(p.exit_code, 0) << p.err;
  EXPECT_EQ(p.out, "SHOUT\n");
}

TEST(Cli, TheProgramCanReopenItsOwnStdioByPath) {
  auto p = RunPolyrun({"run", "-l", "bash", "-c",
                       "cat /dev/stdin; echo out > /dev/stdout; echo err > /dev/stderr", "--input",
                       "from stdin\n"});
  EXPECT_EQ(p.exit_code, 0) << p.err;
  EXPECT_EQ(p.out, "from stdin\nout\n");
  EXPECT_EQ(p.err, "err\n");
}

TEST(Cli, InputFlagFeedsStdin) {
  auto p = RunPolyrun({"run", "-l", "bash", "-c", "cat", "--input", "given"});
  EXPECT_EQ(p.exit_code, 0) << p.err;
  EXPECT_EQ(p.out, "given");
}

TEST(Cli, TimeoutHasItsOwnExitCodeAndSaysWhichLimit) {
  auto p = RunPolyrun({"run", "-l", "bash", "-c", "sleep 30", "--wall-time", "300ms"});
  EXPECT_EQ(p.exit_code, 124);
  EXPECT_NE(p.err.find("wall time limit of 300ms exceeded"), std::string::npos) << p.err;
  auto j = RunPolyrun({"run", "--json", "-l", "python", "-c", "while True: pass", "--cpu-time",
                       "500ms", "--wall-time", "5s"});
  EXPECT_EQ(j.exit_code, 0);
  json r = json::parse(j.out);
  EXPECT_EQ(r["status"], "timeout");
  EXPECT_EQ(r["limit"], "cpu_time");
  // Ended by the CPU limit, not the 5 s wall limit (that would say "wall_time"): no wall-clock
  // bound here, which a loaded machine could break.
  EXPECT_GE(r["usage"]["cpu_ms"].get<int>(), 500);
}

TEST(Cli, MemoryLimitIsReported) {
  auto j = RunPolyrun({"run", "--json", "-l", "python", "-c",
                       "x = bytearray(200 * 1024 * 1024); print(len(x))", "--memory", "64M"});
  EXPECT_EQ(j.exit_code, 0) << j.err;
  json r = json::parse(j.out);
  EXPECT_EQ(r["status"], "memory_limit") << r.dump(2);
  EXPECT_EQ(r["limit"], "memory");
  EXPECT_EQ(r["limits"]["memory"], 64 << 20);
  EXPECT_EQ(RunPolyrun({"run", "-l", "python", "-c", "x = bytearray(200 * 1024 * 1024)", "--memory",
                        "64M"})
                .exit_code,
            125);
}

TEST(Cli, OutputLimitTruncatesAndStops) {
  auto j = RunPolyrun({"run", "--json", "-l", "python", "-c", "while True: print('x' * 1000)",
                       "--output-limit", "64K"});
  json r = json::parse(j.out);
  EXPECT_EQ(r["status"], "output_limit");
  EXPECT_EQ(r["truncated"]["stdout"], true);
  EXPECT_EQ(r["stdout"].get<std::string>().size(), 64u * 1024);
}

TEST(Cli, JsonCarriesTheWholeResult) {
  auto p = RunPolyrun({"run", "--json", "-l", "py", "-c", "print('hi')", "--arg", "a"});
  ASSERT_EQ(p.exit_code, 0);
  json r = json::parse(p.out);
  EXPECT_EQ(r["status"], "ok");
  EXPECT_EQ(r["language"], "python");
  EXPECT_FALSE(r["version"].get<std::string>().empty());
  EXPECT_EQ(r["exit_code"], 0);
  EXPECT_TRUE(r["signal"].is_null());
  EXPECT_EQ(r["stdout"], "hi\n");
  EXPECT_EQ(r["truncated"]["stdout"], false);
  EXPECT_GT(r["usage"]["wall_ms"].get<int>(), 0);
  EXPECT_GT(r["usage"]["memory_bytes"].get<int64_t>(), 0);
  EXPECT_EQ(r["limits"]["wall_time"], 5000);
  EXPECT_TRUE(r["id"].get<std::string>().starts_with("ex_"));
}

TEST(Cli, BadInputGetsAOneLineErrorNamingTheProblem) {
  struct Case {
    std::vector<std::string> args;
    std::string needle;
  };
  const std::vector<Case> cases = {
      {{"run", "-l", "cobol-2077", "-c", "x"}, "unknown language \"cobol-2077\""},
      {{"run", "/nonexistent/file.py"}, "cannot read /nonexistent/file.py"},
      {{"run", "-l", "python", "-c", "1", "--memory", "lots"}, "memory: invalid size \"lots\""},
      {{"run", "-l", "python", "-c", "1", "--wall-time", "5x"},
       "wall_time: invalid duration \"5x\""},
      {{"run", "-l", "python", "-c", "1", "--env", "NOEQUALS"},
       "--env \"NOEQUALS\": expected KEY=VALUE"},
      {{"run", "-c", "1"}, "-c needs -l LANG"},
      {{"run"}, "nothing to run"},
  };
  for (const auto& c : cases) {
    auto p = RunPolyrun(c.args);
    EXPECT_NE(p.exit_code, 0) << c.needle;
    EXPECT_NE(p.err.find(c.needle), std::string::npos) << "stderr: " << p.err;
    EXPECT_EQ(std::count(p.err.begin(), p.err.end(), '\n'), 1) << p.err;
  }
  TempDir dir;
  dir.Write("notes.xyz", "hello");
  auto p = RunPolyrun({"run", "notes.xyz"}, dir.path());
  EXPECT_EQ(p.exit_code, 2);
  EXPECT_NE(p.err.find("unknown file extension \".xyz\""), std::string::npos) << p.err;
}

TEST(Cli, LanguagesListsAllSeventeenAsUsable) {
  auto p = RunPolyrun({"languages", "--json"});
  ASSERT_EQ(p.exit_code, 0) << p.err;
  json langs = json::parse(p.out);
  for (const char* id : {"python", "javascript", "typescript", "ruby", "php", "lua", "r", "perl",
                         "scheme", "bash", "sql", "c", "cpp", "rust", "go", "java", "wasm"}) {
    auto it =
        std::find_if(langs.begin(), langs.end(), [&](const json& l) { return l["id"] == id; });
    ASSERT_NE(it, langs.end()) << id;
    EXPECT_TRUE((*it)["usable"].get<bool>()) << it->dump();
    EXPECT_FALSE((*it)["version"].is_null()) << id;
  }
}

TEST(Cli, DoctorRunsARealSandboxedProgram) {
  auto p = RunPolyrun({"doctor", "--json"});
  EXPECT_EQ(p.exit_code, 0) << p.out << p.err;
  json d = json::parse(p.out);
  EXPECT_TRUE(d["ok"].get<bool>());
  bool saw_run = false;
  for (const auto& c : d["checks"]) {
    if (c["check"] == "sandboxed run") saw_run = c["ok"].get<bool>();
  }
  EXPECT_TRUE(saw_run);
}

TEST(Cli, ConfigCeilingRejectsLargerRequestsAndSetsDefaults) {
  TempDir dir;
  dir.Write("polyrun.toml",
            "[ceiling]\nmemory = \"512M\"\n[languages.python.limits]\nwall_time = \"7s\"\n");
  const std::string config = dir.path() + "/polyrun.toml";
  auto p = RunPolyrun(
      {"--config", config, "run", "--json", "-l", "python", "-c", "1", "--memory", "1G"});
  json r = json::parse(p.out);
  EXPECT_EQ(p.exit_code, 2);
  EXPECT_EQ(r["status"], "rejected");
  EXPECT_EQ(r["reason"], "limits.memory: 1G exceeds the operator's ceiling of 512M");
  auto ok = RunPolyrun({"--config", config, "run", "--json", "-l", "python", "-c", "1"});
  json r2 = json::parse(ok.out);
  EXPECT_EQ(r2["status"], "ok") << ok.out;
  EXPECT_EQ(r2["limits"]["wall_time"], 7000);
  auto bad =
      RunPolyrun({"--config", dir.path() + "/missing.toml", "run", "-l", "python", "-c", "1"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("missing.toml"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace polyrun::testing

namespace polyrun::testing {
namespace {

TEST(Cli, OptionsDocumentIsGeneratedFromTheDeclarations) {
  auto p = RunPolyrun({"options"});
  ASSERT_EQ(p.exit_code, 0);
  std::ifstream in(std::string(POLYRUN_SOURCE_DIR) + "/docs/options.md");
  std::string doc((std::istreambuf_iterator<char>(in)), {});
  EXPECT_EQ(p.out, doc)
      << "docs/options.md is stale: run ./build/polyrun options > docs/options.md";
}

}  // namespace
}  // namespace polyrun::testing

namespace polyrun::testing {
namespace {

// A C program, compiled once and then served from the artifact cache in `cache`.
json RunCached(const TempDir& dir, const std::string& cache, const std::string& file) {
  auto p = RunPolyrun({"--cache-dir", cache, "run", "--json", file}, dir.path());
  EXPECT_EQ(p.exit_code, 0) << p.err;
  return json::parse(p.out);
}

TEST(ArtifactCache, ASecondIdenticalCompileIsServedFromTheCache) {
  // C rather than C++: the same cache, and a compile that stays within the compile stage's
  // clocks on an emulated CPU too (the cgroup v2 VM).
  TempDir dir;
  TempDir cache;
  dir.Write("hello.c", "#include <stdio.h>\nint main(void) { puts(\"cached hi\"); }\n");
  json first = RunCached(dir, cache.path(), "hello.c");
  EXPECT_EQ(first["stdout"], "cached hi\n") << first.dump(2);
  EXPECT_FALSE(first["compile"]["cached"].get<bool>());
  json second = RunCached(dir, cache.path(), "hello.c");
  EXPECT_EQ(second["stdout"], "cached hi\n") << second.dump(2);
  EXPECT_TRUE(second["compile"]["cached"].get<bool>());
  // Any change to the sources is a different key.
  dir.Write("hello.c", "#include <stdio.h>\nint main(void) { puts(\"cached hi\"); }  // edit\n");
  json third = RunCached(dir, cache.path(), "hello.c");
  EXPECT_FALSE(third["compile"]["cached"].get<bool>());
}

TEST(Recipes, TheLanguageFolderIsReadOnlyInsideTheSandbox) {
  // perl's run recipe loads a module from its folder, bound at /lang: writing is refused, and
  // the mount itself is read-only, nosuid and nodev whatever the files' modes.
  auto p = RunPolyrun({"run", "-l", "perl", "-c", R"(
print((open(my $f, '>>', '/lang/lib/PolyrunTrace.pm') ? 'writable' : 'refused'), "\n");
open(my $m, '<', '/proc/self/mounts') or die;
while (<$m>) { my @f = split; print "$f[3]\n" if $f[1] eq '/lang'; }
)"});
  EXPECT_EQ(p.exit_code, 0) << p.err;
  ASSERT_EQ(p.out.substr(0, 8), "refused\n") << p.out;
  const std::string opts = p.out.substr(8);
  EXPECT_TRUE(opts.starts_with("ro,")) << opts;
  EXPECT_NE(opts.find("nosuid"), std::string::npos) << opts;
  EXPECT_NE(opts.find("nodev"), std::string::npos) << opts;
}

TEST(Check, UndetectableFilesAreNamedAndExitTwo) {
  TempDir dir;
  dir.Write("notes", "just some words\n");
  auto p = RunPolyrun({"check", "notes"}, dir.path());
  EXPECT_EQ(p.exit_code, 2) << p.out << p.err;
  EXPECT_NE(p.out.find("notes: not checked: language: cannot tell the language"), std::string::npos)
      << p.out;
  auto bad = RunPolyrun({"check", "-l", "cobol-2077", "-c", "x"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("cobol-2077"), std::string::npos) << bad.err;
}

TEST(Check, DetectsByShebangAndDoesNotRunTheProgram) {
  TempDir dir;
  dir.Write("script", "#!/usr/bin/env python3\nimport os\nopen('/work/ran', 'w')\nprint(\n");
  auto p = RunPolyrun({"check", "--json", "script"}, dir.path());
  EXPECT_EQ(p.exit_code, 1) << p.out << p.err;
  json r = json::parse(p.out);
  const json& f = r["files"][0];
  EXPECT_EQ(f["language"], "python") << r.dump(2);
  EXPECT_EQ(f["detected_by"], "shebang");
  ASSERT_EQ(f["syntax_errors"].size(), 1u) << r.dump(2);
  EXPECT_EQ(f["syntax_errors"][0]["line"], 4);
}

}  // namespace
}  // namespace polyrun::testing
