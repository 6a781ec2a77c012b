// Harness for the escape suite: real hostile programs through the real engine and sandbox.
//
// Every test runs in the EscapeTest fixture, whose TearDown checks what every test must leave
// behind: no new process with the sandbox's host uid, no run cgroup of ours, and a polyrun that
// still answers a trivial run at once. The test process is a child subreaper, so anything that
// escaped a run's PID namespace would be reparented to us and be found.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "engine/engine.h"
#include "sandbox/sandbox.h"

namespace polyrun::escape {

// The host uid the sandbox's user maps to when polyrun runs as root.
inline constexpr uid_t kSandboxHostUid = 65534;

struct ProcEntry {
  pid_t pid = 0;
  pid_t ppid = 0;
  uid_t uid = 0;
  unsigned long long start = 0;  // starttime from /proc/PID/stat: tells pid reuse apart
  std::string name;
  // It cannot run again: a zombie, exiting (PF_EXITING), or with SIGKILL pending.
  bool dying = false;
};

// Every process on the host, from /proc.
std::vector<ProcEntry> ListProcesses();

// Processes with the sandbox's host uid that were not in `before` and belong to no other live
// supervisor: our descendants, or orphans whose ancestry up to init holds only sandbox-uid
// processes. Each as "pid name".
std::vector<std::string> LeakedSandboxProcesses(
    const std::set<std::pair<pid_t, unsigned long long>>& before);

// Our descendants with the sandbox's host uid right now.
int LiveSandboxDescendants();
// Those of them that can still run: not a zombie, not exiting, no SIGKILL pending. Each as
// "pid name".
std::vector<std::string> RunnableSandboxDescendants();

// The directories polyrun creates run cgroups in (one per v1 hierarchy, one on v2).
std::vector<std::string> PolyrunCgroupDirs();
// Run cgroups of this process ("run-<pid>-N") present under those directories.
std::vector<std::string> OurRunCgroups();

// One line of /proc/self/status as bytes ("VmRSS", "VmHWM").
uint64_t SelfStatusKb(const std::string& key);
// One field of /proc/meminfo in kB.
uint64_t MeminfoKb(const std::string& key);

// "key=value" pairs from whitespace-separated tokens of a program's output.
std::map<std::string, std::string> ParsePairs(const std::string& text);

// Reads tests/escape/programs/<name>.
std::string Program(const std::string& name);

// An engine of a suite's own (the warm-pool and zygote suites), its cache in a fresh directory
// under /tmp, with its pools started: `warm_pool_size` warm sandboxes per language, zygotes
// or not, and `prebuilt` prebuilt sandboxes per language. Destroying it stops the pools and
// removes the directory.
struct PooledEngine {
  std::string dir;
  std::unique_ptr<engine::Engine> engine;
  ~PooledEngine();
};
// Null, with a test failure naming why, when the engine could not be created.
std::unique_ptr<PooledEngine> StartPooledEngine(size_t warm_pool_size, bool zygotes,
                                                size_t prebuilt = 0);

// Polls `done` until it holds or `limit` passes; false on timeout.
bool PollUntil(const std::function<bool()>& done, std::chrono::milliseconds limit);

// Waits (bounded) until `language`'s zygote runs; on timeout, a test failure with each
// zygote's last error.
bool ZygoteReady(engine::Engine& engine, const std::string& language);

// A Python one-shot request for `code`.
engine::ExecutionRequest PythonRequest(const std::string& code);

// A language's self-test case (languages/<id>/tests/*.toml, tests/integration/
// language_selftest.cc), replayed by the suites of the paths a run may take.
struct SelfTestCase {
  std::string language;
  std::filesystem::path file;
};
// Every language's one-shot cases, in file order. `warm_only`: of the languages with a warm
// bootstrap, and without the cases that set env (a warm sandbox cannot serve them).
std::vector<SelfTestCase> SelfTestCases(bool warm_only);
// The case's request: its code or files, stdin, args and env. Its expectations stay in the file.
engine::ExecutionRequest SelfTestRequest(const SelfTestCase& c);
// The case as a test name: language_file.
std::string SelfTestName(const ::testing::TestParamInfo<SelfTestCase>& info);

struct RunOptions {
  std::vector<std::string> args = {};
  std::map<std::string, std::string> limits = {};  // limit name -> text ("1s", "128M")
  std::string stdin_data = {};
  engine::EventSink sink = nullptr;
  int cancel_fd = -1;
  bool must_compile = true;  // a probe that does not compile is a broken test
};

class EscapeTest : public ::testing::Test {
 public:
  static void SetUpTestSuite();
  static void TearDownTestSuite();

 protected:
  void SetUp() override;
  void TearDown() override;

  // Runs `code` in `language` through the engine. `elapsed` (optional) receives the time the
  // whole Engine::Run call took.
  engine::ExecutionResult Run(const std::string& language, const std::string& code,
                              const RunOptions& options = {},
                              std::chrono::milliseconds* elapsed = nullptr);
  // The probes: C programs from tests/escape/programs, compiled by polyrun's `c` language.
  engine::ExecutionResult RunProgram(const std::string& program, RunOptions options,
                                     std::chrono::milliseconds* elapsed = nullptr) {
    return Run("c", Program(program), options, elapsed);
  }

  // A trivial run right after an attack must come back ok, quickly.
  void ExpectResponsive();
  // No leftover processes or cgroups from this test.
  void ExpectHostClean();

  static engine::Engine& engine() { return *engine_; }
  static const std::string& temp_dir() { return temp_dir_; }

  // Sandbox-uid processes present before the test (pid, start time).
  std::set<std::pair<pid_t, unsigned long long>> before_;

 private:
  static std::unique_ptr<engine::Engine> engine_;
  static std::string temp_dir_;
};

// Everything about a result worth printing when an assertion fails.
std::string Describe(const engine::ExecutionResult& r);

}  // namespace polyrun::escape
