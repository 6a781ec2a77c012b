// Prebuilt sandboxes (docs/performance.md): a tree built ahead of its run, its program
// polyrun-exec waiting to become the run's. A run in one must be the run of a tree built for it
// (its environment, files, ids, privileges, descriptors and failures), each serves one run, its
// clocks start at the run, and every language's self-test cases give what they give cold.
// Needs root (labels root, escape).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <toml.hpp>
#include <vector>

#include "engine/engine.h"
#include "engine/result_json.h"
#include "escape.h"
#include "sandbox/cgroup.h"
#include "sandbox/sandbox.h"

namespace polyrun::engine {
namespace {

namespace fs = std::filesystem;
using languages::Limit;
using sandbox::Termination;

class PrebuiltSandboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto cgroups = sandbox::DetectCgroups();
    ASSERT_TRUE(cgroups) << cgroups.error().message();
    sandbox::SandboxConfig config;
    config.cgroups = std::move(*cgroups);
    auto sb = sandbox::Sandbox::Create(std::move(config));
    ASSERT_TRUE(sb) << sb.error().message();
    sandbox_ = std::move(*sb);
  }
  void TearDown() override {
    auto settled = sandbox_->Settle();
    EXPECT_TRUE(settled) << settled.error().message();
  }

  // A shell's tree: what is built ahead. Its argv, env and files are the run's.
  static sandbox::SandboxSpec Tree() {
    sandbox::SandboxSpec spec;
    for (const char* p : {"/usr", "/bin", "/lib", "/lib64"}) spec.binds.push_back({p, true, ""});
    spec.limits.wall_time = sandbox::Millis(5000);
    return spec;
  }
  static sandbox::SandboxSpec Shell(const std::string& script) {
    sandbox::SandboxSpec spec = Tree();
    spec.argv = {"/bin/sh", "-c", script};
    spec.env = {"PATH=/usr/bin:/bin"};
    return spec;
  }
  sandbox::PreparedSandbox Prebuilt(const sandbox::SandboxSpec& tree) {
    auto prepared = sandbox_->Prebuild(tree);
    EXPECT_TRUE(prepared) << prepared.error().message();
    if (!prepared) std::abort();
    auto ready = prepared->WaitReady(std::chrono::seconds(20));
    EXPECT_TRUE(ready) << ready.error().message();
    return std::move(*prepared);
  }
  sandbox::SandboxOutcome RunPrebuilt(const sandbox::SandboxSpec& run) {
    auto outcome = sandbox_->RunPrebuilt(Prebuilt(run), run);
    EXPECT_TRUE(outcome) << outcome.error().message();
    return outcome ? *outcome : sandbox::SandboxOutcome{};
  }
  sandbox::SandboxOutcome RunCold(const sandbox::SandboxSpec& run) {
    auto outcome = sandbox_->Run(run);
    EXPECT_TRUE(outcome) << outcome.error().message();
    return outcome ? *outcome : sandbox::SandboxOutcome{};
  }

  std::unique_ptr<sandbox::Sandbox> sandbox_;
};

TEST_F(PrebuiltSandboxTest, ARunIsItsProgramAsInATreeBuiltForIt) {
  sandbox::SandboxSpec run = Shell(
      "tr '\\0' '\\n' < /proc/$$/environ | sort | tr '\\n' ' '; echo\n"
      "echo pid $$ ppid $PPID uid $(id -u) gid $(id -g)\n"
      "tr '\\0' ' ' < /proc/$$/cmdline | head -c 12; echo\n"
      "stat -c '%n %a %U' a a/b a/b/c.txt run.sh\n"
      "cat a/b/c.txt; ./run.sh\n"
      "grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/$$/status | tr '\\t\\n' '  '; echo\n"
      "ls /proc/$$/fd | tr '\\n' ' '; echo\n"
      "cat\n");
  run.env.push_back("GREETING=hello there");
  run.files = {{"a/b/c.txt", "nested\n", false}, {"run.sh", "#!/bin/sh\necho script ran\n", true}};
  run.stdin_data = "the run's own input\n";
  const sandbox::SandboxOutcome cold = RunCold(run);
  const sandbox::SandboxOutcome prebuilt = RunPrebuilt(run);
  ASSERT_EQ(cold.termination, Termination::kExited) << cold.setup_error << cold.stderr_data;
  EXPECT_EQ(prebuilt.termination, Termination::kExited) << prebuilt.setup_error;
  EXPECT_EQ(prebuilt.exit_code, 0) << prebuilt.stderr_data;
  EXPECT_EQ(prebuilt.stdout_data, cold.stdout_data) << prebuilt.stderr_data;
  EXPECT_EQ(prebuilt.stderr_data, cold.stderr_data);
  // And what both are, not only that they agree.
  const std::string& out = prebuilt.stdout_data;
  EXPECT_TRUE(
      out.starts_with("GREETING=hello there PATH=/usr/bin:/bin \n"
                      "pid 2 ppid 1 uid 1000 gid 1000\n"
                      "/bin/sh -c t\n"
                      "a 755 sandbox\na/b 755 sandbox\na/b/c.txt 644 sandbox\n"
                      "run.sh 755 sandbox\nnested\nscript ran\n"))
      << out;
  EXPECT_NE(out.find("CapEff: 0000000000000000"), std::string::npos) << out;
  EXPECT_NE(out.find("NoNewPrivs: 1"), std::string::npos) << out;
  EXPECT_NE(out.find("Seccomp: 2"), std::string::npos) << out;
  EXPECT_NE(out.find("\n0 1 2 \n"), std::string::npos) << "fd 3 (polyrun-exec's) is closed\n"
                                                       << out;
  EXPECT_TRUE(out.ends_with("the run's own input\n")) << out;
}

TEST_F(PrebuiltSandboxTest, AProgramThatCannotStartIsReportedAsCold) {
  sandbox::SandboxSpec missing = Tree();
  missing.argv = {"/usr/bin/polyrun-no-such-program"};
  const sandbox::SandboxOutcome m = RunPrebuilt(missing);
  EXPECT_EQ(m.termination, Termination::kExecFailed) << m.setup_error;
  EXPECT_EQ(m.setup_error, "execve /usr/bin/polyrun-no-such-program: No such file or directory");
  EXPECT_EQ(RunCold(missing).setup_error, m.setup_error);

  // A file /work has no room for: both fail to set up the run, naming the file.
  sandbox::SandboxSpec full = Shell("echo never");
  full.limits.work_dir_bytes = 256 << 10;
  full.files = {{"big", std::string(1 << 20, 'x'), false}};
  const sandbox::SandboxOutcome f = RunPrebuilt(full);
  EXPECT_EQ(f.termination, Termination::kSetupFailed) << f.setup_error;
  EXPECT_EQ(f.setup_error, "write /work/big: No space left on device");
  const sandbox::SandboxOutcome fc = RunCold(full);
  EXPECT_EQ(fc.termination, Termination::kSetupFailed) << fc.setup_error;
  EXPECT_TRUE(fc.setup_error.ends_with("/work/big: No space left on device")) << fc.setup_error;
  EXPECT_EQ(f.stdout_data, "");
}

TEST_F(PrebuiltSandboxTest, EachServesOneRunAndOnlyThroughRunPrebuilt) {
  const sandbox::SandboxSpec run = Shell("echo ran");
  sandbox::PreparedSandbox box = Prebuilt(run);
  auto claimed = sandbox_->Claim(std::move(box), run);
  ASSERT_FALSE(claimed);
  EXPECT_EQ(claimed.error().code, Errc::kInvalidArgument) << claimed.error().message();

  sandbox::PreparedSandbox once = Prebuilt(run);
  auto first = sandbox_->RunPrebuilt(std::move(once), run);
  ASSERT_TRUE(first) << first.error().message();
  EXPECT_EQ(first->stdout_data, "ran\n");
  // A used handle must be refused, not run again.
  // NOLINTNEXTLINE(bugprone-use-after-move,clang-analyzer-cplusplus.Move)
  auto again = sandbox_->RunPrebuilt(std::move(once), run);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, Errc::kInvalidArgument);

  // A warm sandbox is not a prebuilt one.
  sandbox::SandboxSpec warm = Shell("printf R >&3; exec 3>&-; read line");
  warm.frames_channel = true;
  auto prepared = sandbox_->Prepare(warm);
  ASSERT_TRUE(prepared) << prepared.error().message();
  auto wrong = sandbox_->RunPrebuilt(std::move(*prepared), run);
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code, Errc::kInvalidArgument);

  // What polyrun-exec cannot do as a cold init would: a file over the file-size limit (it
  // writes under it), artifacts, a frames channel.
  sandbox::SandboxSpec large = run;
  large.limits.file_size_bytes = 1000;
  large.files = {{"big", std::string(1001, 'x'), false}};
  sandbox::SandboxSpec collect = run;
  collect.collect = {"out"};
  sandbox::SandboxSpec frames = run;
  frames.frames_channel = true;
  EXPECT_TRUE(sandbox::Sandbox::PrebuiltServes(run));
  for (const sandbox::SandboxSpec& refused : {large, collect, frames}) {
    EXPECT_FALSE(sandbox::Sandbox::PrebuiltServes(refused)) << "the rule the engine asks first";
    auto r = sandbox_->RunPrebuilt(Prebuilt(run), refused);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::kInvalidArgument) << r.error().message();
  }
}

TEST_F(PrebuiltSandboxTest, ClocksStartAtTheRun) {
  sandbox::SandboxSpec run = Shell("echo fine");
  run.limits.wall_time = sandbox::Millis(1000);
  run.limits.cpu_time = sandbox::Millis(1000);
  sandbox::PreparedSandbox box = Prebuilt(run);
  // The tree waited longer than the run may last: that time is not the run's.
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));  // ages the prebuilt tree
  auto ok = sandbox_->RunPrebuilt(std::move(box), run);
  ASSERT_TRUE(ok) << ok.error().message();
  EXPECT_EQ(ok->termination, Termination::kExited) << ok->setup_error;
  EXPECT_EQ(ok->stdout_data, "fine\n");
  EXPECT_LT(ok->wall.count(), 1000);

  // The run's own limits still end it.
  sandbox::SandboxSpec spin = Shell("while :; do :; done");
  spin.limits.cpu_time = sandbox::Millis(300);
  const sandbox::SandboxOutcome s = RunPrebuilt(spin);
  EXPECT_EQ(s.termination, Termination::kCpuTimeout);
}

// Through the engine: the path a run takes when no warm sandbox or zygote serves it.
class PrebuiltEngineTest : public ::testing::Test {
 public:
  static void SetUpTestSuite() {
    prebuilt_ = escape::StartPooledEngine(0, false, 2);
    cold_ = escape::StartPooledEngine(0, false, 0);
    ASSERT_TRUE(prebuilt_ && cold_);
  }
  static void TearDownTestSuite() {
    prebuilt_.reset();
    cold_.reset();
  }

 protected:
  static Engine& engine() { return *prebuilt_->engine; }
  // Waits (bounded) until the language has a prebuilt sandbox ready: the next run takes it.
  static bool Ready(const std::string& language) {
    const auto limit = std::chrono::seconds(getenv("QUICK") ? 5 : 60);
    if (escape::PollUntil([&] { return engine().PrebuiltStats()[language].ready > 0; }, limit)) {
      return true;
    }
    const WarmPool::Stats st = engine().PrebuiltStats()[language];
    ADD_FAILURE() << language << ": no prebuilt sandbox; failed " << st.failed
                  << ", last error: " << st.last_error;
    return false;
  }
  static ExecutionResult Prebuilt(const ExecutionRequest& req) {
    EXPECT_TRUE(Ready(req.language));
    ExecutionResult r = engine().Run(req);
    EXPECT_EQ(r.usage.start, "prebuilt") << ToJson(r).dump();
    return r;
  }
  static std::unique_ptr<escape::PooledEngine> prebuilt_, cold_;
};
std::unique_ptr<escape::PooledEngine> PrebuiltEngineTest::prebuilt_;
std::unique_ptr<escape::PooledEngine> PrebuiltEngineTest::cold_;

TEST_F(PrebuiltEngineTest, ARunWithItsOwnEnvironmentTakesOne) {
  // Neither a warm bootstrap nor a zygote can serve it: their interpreter started without it.
  ExecutionRequest req = escape::PythonRequest("import os\nprint(os.environ['GREETING'])");
  req.env = {{"GREETING", "hi"}};
  ExecutionResult r = Prebuilt(req);
  EXPECT_EQ(r.status, Status::kOk) << ToJson(r).dump();
  EXPECT_EQ(r.stdout_text, "hi\n");
}

TEST_F(PrebuiltEngineTest, NothingARunLeavesReachesTheNextRun) {
  ExecutionRequest leave = escape::PythonRequest(
      "import os, subprocess\n"
      "open('/tmp/left', 'w').write('secret')\n"
      "open('/work/left', 'w').write('secret')\n"
      "subprocess.Popen(['sleep', '60'], start_new_session=True)\n"
      "print('left')\n");
  ASSERT_EQ(Prebuilt(leave).stdout_text, "left\n");
  ExecutionRequest look = escape::PythonRequest(
      "import os\n"
      "print(os.path.exists('/tmp/left'), os.path.exists('/work/left'),\n"
      "      sorted(p for p in os.listdir('/proc') if p.isdigit()))\n");
  ExecutionResult r = Prebuilt(look);
  EXPECT_EQ(r.stdout_text, "False False ['1', '2']\n") << ToJson(r).dump();
}

// Its cgroup was made with the language's defaults; the run's own memory and process limits
// replace them before its program starts, lower or higher, and hold as in a cold run.
TEST_F(PrebuiltEngineTest, ARunWithItsOwnMemoryAndProcessLimitsTakesOne) {
  const std::string allocate =
      "import sys\n"
      "block = bytearray(int(sys.argv[1]) << 20)\n"
      "print('allocated', len(block) >> 20)\n";
  ExecutionRequest lower = escape::PythonRequest(allocate);
  lower.limits[Limit::kMemory] = 32ull << 20;
  lower.args = {"64"};
  ExecutionResult l = Prebuilt(lower);
  EXPECT_EQ(l.status, Status::kMemoryLimit) << ToJson(l).dump();

  lower.args = {"8"};
  ExecutionResult fits = Prebuilt(lower);
  EXPECT_EQ(fits.status, Status::kOk) << ToJson(fits).dump();
  EXPECT_EQ(fits.stdout_text, "allocated 8\n");

  // Above the language's default of 256M: the default cgroup would have stopped it.
  ExecutionRequest higher = escape::PythonRequest(allocate);
  higher.limits[Limit::kMemory] = 512ull << 20;
  higher.args = {"320"};
  ExecutionResult h = Prebuilt(higher);
  EXPECT_EQ(h.status, Status::kOk) << ToJson(h).dump();
  EXPECT_EQ(h.stdout_text, "allocated 320\n");

  // One process: the program, which cannot fork (the tree's init is polyrun's and not counted).
  // The same run cold says the same.
  ExecutionRequest processes = escape::PythonRequest(
      "import os\n"
      "try:\n"
      "    pid = os.fork()\n"
      "except OSError as e:\n"
      "    print('fork refused:', e.errno)\n"
      "else:\n"
      "    if pid == 0:\n"
      "        os._exit(0)\n"
      "    os.waitpid(pid, 0)\n"
      "    print('forked')\n");
  processes.limits[Limit::kProcesses] = 1;
  ExecutionResult p = Prebuilt(processes);
  EXPECT_EQ(p.status, Status::kOk) << ToJson(p).dump();
  EXPECT_EQ(p.stdout_text, "fork refused: 11\n");
  ExecutionResult cold = cold_->engine->Run(processes);
  EXPECT_EQ(cold.usage.start, "cold");
  EXPECT_EQ(cold.stdout_text, p.stdout_text) << ToJson(cold).dump();
  processes.limits[Limit::kProcesses] = 2;
  EXPECT_EQ(Prebuilt(processes).stdout_text, "forked\n");

  // The next run of the language gets its defaults again: a new tree, a new cgroup.
  ExecutionRequest default_memory = escape::PythonRequest(allocate);
  default_memory.args = {"320"};
  ExecutionResult next = Prebuilt(default_memory);
  EXPECT_EQ(next.status, Status::kMemoryLimit) << ToJson(next).dump();
}

TEST_F(PrebuiltEngineTest, RunsAPrebuiltSandboxCannotServeRunCold) {
  ASSERT_TRUE(Ready("python"));
  ExecutionRequest disk = escape::PythonRequest("print(1)");
  disk.limits[Limit::kDisk] = 1ull << 20;
  ExecutionResult d = engine().Run(disk);
  EXPECT_EQ(d.status, Status::kOk) << ToJson(d).dump();
  EXPECT_EQ(d.usage.start, "cold") << "the prebuilt tree's /work has the default size";
}

// Each self-test case of every language, run in a prebuilt sandbox, must give what it gives
// cold (tests/integration/language_selftest.cc), environment and all.
class PrebuiltSelfTest : public PrebuiltEngineTest,
                         public ::testing::WithParamInterface<escape::SelfTestCase> {};

TEST_P(PrebuiltSelfTest, BehavesAsCold) {
  const toml::value spec = toml::parse(GetParam().file.string());
  const ExecutionRequest req = escape::SelfTestRequest(GetParam());
  const toml::value& expect = toml::find(spec, "expect");
  // A compile error ends a run before its run stage, the one a prebuilt sandbox serves.
  const bool no_run_stage = toml::find<std::string>(expect, "status") == "compile_error";
  ExecutionResult prebuilt = no_run_stage ? engine().Run(req) : Prebuilt(req);
  ExecutionResult cold = cold_->engine->Run(req);
  ASSERT_EQ(cold.usage.start, "cold");
  const std::string context = ToJson(prebuilt).dump(2) + "\ncold:\n" + ToJson(cold).dump(2);
  EXPECT_EQ(std::string(StatusName(prebuilt.status)), toml::find<std::string>(expect, "status"))
      << context;
  EXPECT_EQ(prebuilt.status, cold.status) << context;
  EXPECT_EQ(prebuilt.exit_code, cold.exit_code) << context;
  EXPECT_EQ(prebuilt.stdout_text, cold.stdout_text) << context;
  EXPECT_EQ(prebuilt.stderr_text, cold.stderr_text) << context;
  EXPECT_EQ(prebuilt.error.has_value(), cold.error.has_value()) << context;
  if (prebuilt.error && cold.error) {
    EXPECT_EQ(ToJson(*prebuilt.error), ToJson(*cold.error)) << context;
  }
}

INSTANTIATE_TEST_SUITE_P(Languages, PrebuiltSelfTest,
                         ::testing::ValuesIn(escape::SelfTestCases(false)), escape::SelfTestName);

}  // namespace
}  // namespace polyrun::engine
