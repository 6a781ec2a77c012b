// Warm pools (docs/performance.md) against hostile and curious programs: a warm sandbox serves
// exactly one run, so nothing a run leaves behind — files, processes, imported modules,
// environment, memory — reaches the next one; a run's clocks start when it is claimed; and
// every warm run, and every run forked from a zygote, behaves as the same run cold (each
// language's self-test cases, replayed).
// Needs root (labels root, escape).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <toml.hpp>
#include <vector>

#include "engine/engine.h"
#include "engine/result_json.h"
#include "escape.h"

namespace polyrun::engine {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using languages::Limit;

class WarmEscapeTest : public ::testing::Test {
 public:
  static void SetUpTestSuite() {
    // Warm pools alone (a zygote would serve what the pool cannot), and beside them an engine with
    // zygotes for the same runs forked (zygote_escape_test.cc has its own hostile cases).
    warm_ = escape::StartPooledEngine(2, false);
    zygote_ = escape::StartPooledEngine(0, true);
    ASSERT_TRUE(warm_ && zygote_);
    engine_ = warm_->engine.get();
    zygote_engine_ = zygote_->engine.get();
  }
  static void TearDownTestSuite() {
    warm_.reset();
    zygote_.reset();
  }

 protected:
  // Waits (bounded) until the language's pool has a sandbox ready: the next run is warm.
  static bool Ready(const std::string& language) {
    const auto limit = std::chrono::seconds(getenv("QUICK") ? 5 : 60);
    if (escape::PollUntil([&] { return engine_->WarmPoolStats()[language].ready > 0; }, limit)) {
      return true;
    }
    for (const auto& [id, st] : engine_->WarmPoolStats()) {
      ADD_FAILURE() << id << ": ready " << st.ready << " target " << st.target << " failed "
                    << st.failed << " dropped " << st.dropped << " last error: " << st.last_error;
    }
    return false;
  }
  static ExecutionResult Warm(const ExecutionRequest& req) {
    EXPECT_TRUE(Ready(req.language)) << req.language << ": no warm sandbox within 60 s";
    ExecutionResult r = engine_->Run(req);
    EXPECT_EQ(r.usage.start, "warm") << ToJson(r).dump();
    return r;
  }
  static ExecutionRequest Python(const std::string& code) { return escape::PythonRequest(code); }

  static std::unique_ptr<escape::PooledEngine> warm_, zygote_;
  static Engine* engine_;
  static Engine* zygote_engine_;
};
std::unique_ptr<escape::PooledEngine> WarmEscapeTest::warm_;
std::unique_ptr<escape::PooledEngine> WarmEscapeTest::zygote_;
Engine* WarmEscapeTest::engine_ = nullptr;
Engine* WarmEscapeTest::zygote_engine_ = nullptr;

TEST_F(WarmEscapeTest, NothingARunLeavesReachesTheNextRun) {
  // The first run leaves files, a module, an environment variable, a process that would
  // outlive it and a byte pattern in memory; the second, in the next warm sandbox, looks.
  ExecutionResult first = Warm(Python(R"(
import os, subprocess, decimal
open('/work/left.txt', 'w').write('x')
open('/tmp/left.txt', 'w').write('x')
open('/dev/shm/left', 'w').write('x')
os.environ['POLYRUN_LEFT'] = '1'
subprocess.Popen(['/usr/bin/sleep', '60'], start_new_session=True)
secret = bytearray(b'POLYRUN-SECRET-' * 4096)
print('left')
)"));
  ASSERT_EQ(first.status, Status::kOk) << ToJson(first).dump();
  ASSERT_EQ(first.stdout_text, "left\n");

  ExecutionResult second = Warm(Python(R"(
import os, sys
print(os.path.exists('/work/left.txt'), os.path.exists('/tmp/left.txt'),
      os.path.exists('/dev/shm/left'))
print('decimal' in sys.modules, 'POLYRUN_LEFT' in os.environ)
print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()) == [1, os.getpid()])
print(sorted(os.listdir('/work')))
)"));
  ASSERT_EQ(second.status, Status::kOk) << ToJson(second).dump();
  EXPECT_EQ(second.stdout_text, "False False False\nFalse False\nTrue\n['main.py']\n")
      << ToJson(second).dump();
}

TEST_F(WarmEscapeTest, TheRunSeesOnlyItsOwnProgramNotTheBootstrapsHeader) {
  // stdin starts exactly at the program's own input; argv and __main__ are the entry's.
  ExecutionRequest req = Python(
      "import sys\n"
      "print(repr(sys.stdin.read()), sys.argv, __name__, __file__, sys.path[0])\n");
  req.stdin_data = "line 1\nline 2\n";
  req.args = {"a b", "c"};
  ExecutionResult r = Warm(req);
  ASSERT_EQ(r.status, Status::kOk) << ToJson(r).dump();
  EXPECT_EQ(r.stdout_text,
            "'line 1\\nline 2\\n' ['main.py', 'a b', 'c'] __main__ /work/main.py /work\n");
}

TEST_F(WarmEscapeTest, ClocksStartAtTheClaim) {
  ASSERT_TRUE(Ready("python"));
  // The sandbox waited in the pool longer than the run may last: that time is not the run's.
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));  // ages the warm sandbox
  ExecutionRequest ok = Python("print('fine')");
  ok.limits[Limit::kWallTime] = 1000;
  ok.limits[Limit::kCpuTime] = 1000;
  ExecutionResult r = Warm(ok);
  EXPECT_EQ(r.status, Status::kOk) << ToJson(r).dump();
  EXPECT_LT(r.usage.cpu_ms, 1000u) << ToJson(r).dump();

  // A run's own limits still end it.
  ExecutionRequest spin = Python("while True: pass");
  spin.limits[Limit::kCpuTime] = 300;
  ExecutionResult s = Warm(spin);
  EXPECT_EQ(s.status, Status::kTimeout) << ToJson(s).dump();
  EXPECT_EQ(s.limit, "cpu_time") << ToJson(s).dump();

  ExecutionRequest flood = Python("import sys\nwhile True: sys.stdout.write('x' * 65536)");
  flood.limits[Limit::kOutput] = 100000;
  ExecutionResult f = Warm(flood);
  EXPECT_EQ(f.status, Status::kOutputLimit) << ToJson(f).dump();
  EXPECT_LE(f.stdout_text.size(), 100000u);
}

// The bootstrap tells the host when the run is over ("E" and the exit status on a descriptor
// of its own, close-on-exec). The program can find that descriptor and say the same: it then
// only ends its own run early, with a status it could have exited with, and nothing of it runs
// on. Anything else on it is ignored.
TEST_F(WarmEscapeTest, AProgramThatForgesItsEndOnlyEndsItself) {
  const std::string find_end =
      "import ctypes, fcntl, os, stat\n"
      "libc = ctypes.CDLL(None)\n"
      "ends = []\n"
      "for fd in range(3, 256):\n"
      "    try:\n"
      "        if stat.S_ISFIFO(os.fstat(fd).st_mode): ends.append(fd)\n"
      "    except OSError:\n"
      "        pass\n"
      "print(len(ends), all(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC for fd in ends),\n"
      "      flush=True)\n";
  ExecutionRequest forge = Python(find_end +
                                  "if os.fork() == 0:\n"
                                  "    libc.prctl(15, b'forged-end', 0, 0, 0)\n"
                                  "    while True: pass\n"
                                  "for fd in ends: os.write(fd, b'E\\x07')\n"
                                  "libc.prctl(15, b'forged-end', 0, 0, 0)\n"
                                  "while True: pass\n");
  forge.limits[Limit::kWallTime] = 5000;
  ExecutionResult r = Warm(forge);
  auto forged = [] {
    std::vector<std::string> found;
    for (const auto& p : escape::RunnableSandboxDescendants()) {
      if (p.ends_with(" forged-end")) found.push_back(p);
    }
    return found;
  };
  EXPECT_EQ(forged(), std::vector<std::string>{}) << "the forger's processes still run";
  EXPECT_EQ(r.status, Status::kRuntimeError) << ToJson(r).dump();
  EXPECT_EQ(r.exit_code, 7) << ToJson(r).dump();
  EXPECT_EQ(r.stdout_text, "1 True\n") << ToJson(r).dump();
  EXPECT_LT(r.usage.wall_ms, 4000u) << ToJson(r).dump();
  auto settled = engine_->sandbox().Settle();
  EXPECT_TRUE(settled) << settled.error().message();

  ExecutionRequest garbage = Python(find_end +
                                    "for fd in ends: os.write(fd, b'Xjunk')\n"
                                    "print('after')\n"
                                    "raise SystemExit(3)\n");
  ExecutionResult g = Warm(garbage);
  EXPECT_EQ(g.status, Status::kRuntimeError) << ToJson(g).dump();
  EXPECT_EQ(g.exit_code, 3) << ToJson(g).dump();
  EXPECT_EQ(g.stdout_text, "1 True\nafter\n") << ToJson(g).dump();
}

TEST_F(WarmEscapeTest, TheRunsOwnCpuRlimitIsTheSecondFence) {
  // The tree was built before the run's CPU limit was known; the per-process RLIMIT_CPU behind
  // the cgroup's accounting must still be the run's (plus the CPU the interpreter used to start,
  // under a second), as in a cold run: 2 s + 1 s of grace.
  // The interpreter's start counts in whole seconds: one on this machine, more in an emulated VM,
  // so the program reports what it used (with its init's share, well under a second, on top).
  ExecutionRequest req = Python(
      "import math, resource\n"
      "u = resource.getrusage(resource.RUSAGE_SELF)\n"
      "print(*resource.getrlimit(resource.RLIMIT_CPU), math.ceil(u.ru_utime + u.ru_stime))\n");
  req.limits[Limit::kCpuTime] = 2000;
  ExecutionResult r = Warm(req);
  ASSERT_EQ(r.status, Status::kOk) << ToJson(r).dump();
  int soft = 0, hard = 0, started = 0;
  ASSERT_EQ(std::sscanf(r.stdout_text.c_str(), "%d %d %d", &soft, &hard, &started), 3)
      << r.stdout_text;
  EXPECT_GE(soft, 3) << r.stdout_text;
  EXPECT_LE(soft, 4 + started) << r.stdout_text;
  EXPECT_EQ(hard, soft + 1) << r.stdout_text;
}

TEST_F(WarmEscapeTest, RequestsAWarmSandboxCannotServeRunCold) {
  ASSERT_TRUE(Ready("python"));
  ExecutionRequest env = Python("import os\nprint(os.environ['GREETING'])");
  env.env = {{"GREETING", "hi"}};
  ExecutionResult r = engine_->Run(env);
  EXPECT_EQ(r.stdout_text, "hi\n");
  EXPECT_EQ(r.usage.start, "cold") << "a variable read at start-up could not take effect";

  ExecutionRequest mem = Python("print(1)");
  mem.limits[Limit::kMemory] = 100ull << 20;
  ExecutionResult m = engine_->Run(mem);
  EXPECT_EQ(m.status, Status::kOk) << ToJson(m).dump();
  EXPECT_EQ(m.usage.start, "cold") << "the warm tree's cgroup has the default memory limit";
}

// The pool itself, with a shell for a bootstrap: it adapts to demand and never hands out a
// sandbox that said anything before its run.
sandbox::SandboxSpec ShellBootstrap(const std::string& script) {
  sandbox::SandboxSpec spec;
  spec.argv = {"/bin/sh", "-c", script};
  spec.env = {"PATH=/usr/bin:/bin"};
  for (const char* dir : {"/usr", "/bin", "/lib", "/lib64"}) spec.binds.push_back({dir, true, ""});
  spec.frames_channel = true;
  return spec;
}

// Polls the pool's figures until `done` holds (bounded).
bool PoolReaches(WarmPool& pool, const std::function<bool(const WarmPool::Stats&)>& done,
                 const std::string& lane = "sh") {
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  while (Clock::now() < deadline) {
    if (done(pool.stats()[lane])) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));  // polling a condition
  }
  return false;
}

TEST_F(WarmEscapeTest, PoolGrowsUnderDemandUpToItsMax) {
  WarmPool::Options options;
  options.max_per_language = 3;
  options.shrink_after = std::chrono::hours(1);
  WarmPool pool(engine_->sandbox(),
                {{"sh", ShellBootstrap("printf R >&3; exec 3>&-; read line; echo \"$line\"")}},
                options);
  EXPECT_EQ(pool.stats()["sh"].target, 1u);
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(PoolReaches(pool, [](const auto& s) { return s.ready > 0; }));
    auto box = pool.Take("sh");
    ASSERT_TRUE(box);
    // Each one serves a run: its program gets the run's stdin and its output is the run's.
    sandbox::SandboxSpec run;
    run.stdin_data = "run " + std::to_string(i) + "\n";
    auto outcome = engine_->sandbox().Claim(std::move(*box), run);
    ASSERT_TRUE(outcome) << outcome.error().message();
    EXPECT_EQ(outcome->stdout_data, "run " + std::to_string(i) + "\n");
    EXPECT_LE(pool.stats()["sh"].target, 3u);
  }
  EXPECT_EQ(pool.stats()["sh"].target, 3u) << "each take that emptied the pool asked for one more";
  EXPECT_EQ(pool.stats()["sh"].taken, 6u);
}

// A language with a zygote refills its pool only after a quiet period (the zygote serves runs
// back to back). The filler fills the emptiest lane first, the first by name on a tie: once "b"
// has been refilled, "a" would have been too, had its quiet period not held it back.
TEST_F(WarmEscapeTest, APoolThatRefillsWhenQuietWaitsUntilItsDemandPauses) {
  WarmPool::Options options;
  options.max_per_language = 1;
  options.refill_when_quiet = {{"a", std::chrono::hours(1)}};
  const auto bootstrap = ShellBootstrap("printf R >&3; exec 3>&-; read line");
  WarmPool pool(engine_->sandbox(), {{"a", bootstrap}, {"b", bootstrap}}, options);
  const auto ready = [](const WarmPool::Stats& s) { return s.ready == 1; };
  // Filled at once at the start: nothing has asked yet.
  ASSERT_TRUE(PoolReaches(pool, ready, "a"));
  ASSERT_TRUE(PoolReaches(pool, ready, "b"));
  ASSERT_TRUE(pool.Take("a"));
  ASSERT_TRUE(pool.Take("b"));
  ASSERT_TRUE(PoolReaches(pool, ready, "b"));
  EXPECT_EQ(pool.stats()["a"].ready, 0u) << "refilled while its demand had not paused";
}

TEST_F(WarmEscapeTest, APoolWithASandboxLeftRefillsOnceTheRunOnItsSandboxHasEnded) {
  WarmPool::Options options;
  options.max_per_language = 2;
  const auto bootstrap = ShellBootstrap("printf R >&3; exec 3>&-; read line");
  WarmPool pool(engine_->sandbox(), {{"a", bootstrap}, {"b", bootstrap}}, options);
  const auto has = [](size_t n) { return [n](const WarmPool::Stats& s) { return s.ready == n; }; };
  ASSERT_TRUE(PoolReaches(pool, has(1), "a"));
  ASSERT_TRUE(PoolReaches(pool, has(1), "b"));
  // Emptied, "a" wants two from now on, and refills at once: no sandbox of it is left.
  ASSERT_TRUE(pool.Take("a"));
  pool.RunEnded("a");
  ASSERT_TRUE(PoolReaches(pool, has(2), "a"));
  // With one left, a run on the other holds its refill back. "b", emptied after it, refills
  // after its grace (its run goes on): once it has, the filler has passed "a" by.
  ASSERT_TRUE(pool.Take("a"));
  ASSERT_TRUE(pool.Take("b"));
  ASSERT_TRUE(PoolReaches(pool, has(1), "b"));
  EXPECT_EQ(pool.stats()["a"].ready, 1u) << "refilled beside the run on its sandbox";
  pool.RunEnded("a");
  EXPECT_TRUE(PoolReaches(pool, has(2), "a"));
}

TEST_F(WarmEscapeTest, AnEmptiedPoolRefillsWhenItsRunEndsOrElseAfterItsGrace) {
  WarmPool::Options options;
  options.max_per_language = 1;
  options.empty_refill_grace = std::chrono::seconds(2);
  WarmPool pool(engine_->sandbox(), {{"sh", ShellBootstrap("printf R >&3; exec 3>&-; read line")}},
                options);
  const auto one = [](const WarmPool::Stats& s) { return s.ready == 1; };
  ASSERT_TRUE(PoolReaches(pool, one));
  // A short run: the refill starts at its end, long before the grace is over.
  ASSERT_TRUE(pool.Take("sh"));
  pool.RunEnded("sh");
  auto t0 = Clock::now();
  ASSERT_TRUE(PoolReaches(pool, one));
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(2)) << "waited out the grace after the run";
  // A run that goes on: the lane is not left empty for longer than the grace.
  t0 = Clock::now();
  ASSERT_TRUE(pool.Take("sh"));
  ASSERT_TRUE(PoolReaches(pool, one));
  EXPECT_GE(Clock::now() - t0, std::chrono::seconds(2)) << "refilled beside the run at once";
  pool.RunEnded("sh");
}

TEST_F(WarmEscapeTest, PoolShrinksWhenIdle) {
  WarmPool::Options options;
  options.max_per_language = 3;
  options.shrink_after = std::chrono::milliseconds(300);
  WarmPool pool(engine_->sandbox(), {{"sh", ShellBootstrap("printf R >&3; exec 3>&-; read line")}},
                options);
  ASSERT_TRUE(PoolReaches(pool, [](const auto& s) { return s.ready > 0; }));
  ASSERT_TRUE(pool.Take("sh"));
  // The take emptied the pool: it wants one more, until it has been quiet for a while.
  EXPECT_EQ(pool.stats()["sh"].target, 2u);
  EXPECT_TRUE(PoolReaches(pool, [](const auto& s) { return s.target == 1 && s.ready == 1; }));
}

TEST_F(WarmEscapeTest, PoolNeverHandsOutASandboxThatSpokeBeforeItsRun) {
  WarmPool pool(engine_->sandbox(),
                {{"sh", ShellBootstrap("echo leaked; printf R >&3; exec 3>&-; read line")}}, {});
  ASSERT_TRUE(PoolReaches(pool, [](const auto& s) { return s.ready > 0; }));
  EXPECT_FALSE(pool.Take("sh")) << "its output would have become the next run's";
  EXPECT_GE(pool.stats()["sh"].dropped, 1u);
  EXPECT_FALSE(pool.Take("nonexistent"));
}

TEST_F(WarmEscapeTest, ABootstrapThatNeverGetsReadyIsReportedNotServed) {
  WarmPool::Options options;
  options.ready_timeout = std::chrono::milliseconds(200);
  WarmPool pool(engine_->sandbox(), {{"sh", ShellBootstrap("read line")}}, options);
  ASSERT_TRUE(PoolReaches(pool, [](const auto& s) { return s.failed > 0; }));
  EXPECT_EQ(pool.stats()["sh"].ready, 0u);
  EXPECT_NE(pool.stats()["sh"].last_error.find("not ready"), std::string::npos)
      << pool.stats()["sh"].last_error;
}

// Each self-test case (languages/<id>/tests/*.toml) of every language with a warm bootstrap, run
// warm and, where the language has a zygote, forked from it, must give what it gives cold
// (tests/integration/language_selftest.cc); cases with env run cold anyway.
class WarmSelfTest : public WarmEscapeTest,
                     public ::testing::WithParamInterface<escape::SelfTestCase> {
 protected:
  static bool ZygoteServes(const std::string& language) {
    return zygote_engine_->ZygoteStats().contains(language);
  }
};

TEST_P(WarmSelfTest, BehavesAsCold) {
  const toml::value spec = toml::parse(GetParam().file.string());
  const ExecutionRequest req = escape::SelfTestRequest(GetParam());
  const toml::value& expect = toml::find(spec, "expect");
  // A compile error ends a run before its run stage, the one a warm sandbox serves.
  const bool no_run_stage = toml::find<std::string>(expect, "status") == "compile_error";
  ExecutionResult warm = no_run_stage ? engine_->Run(req) : Warm(req);
  ExecutionRequest cold_req = req;
  cold_req.env = {{"POLYRUN_COLD", "1"}};  // env: never warm
  ExecutionResult cold = engine_->Run(cold_req);
  ASSERT_EQ(cold.usage.start, "cold");
  const std::string context = ToJson(warm).dump(2) + "\ncold:\n" + ToJson(cold).dump(2);
  EXPECT_EQ(std::string(StatusName(warm.status)), toml::find<std::string>(expect, "status"))
      << context;
  EXPECT_EQ(warm.status, cold.status) << context;
  EXPECT_EQ(warm.exit_code, cold.exit_code) << context;
  EXPECT_EQ(warm.stdout_text, cold.stdout_text) << context;
  // Node's own frames below the program (node:internal/…) name how it was started; the rest
  // of a trace, and everything else, is the same.
  auto program_frames = [](const std::string& text) {
    std::string out;
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
      if (line.find("(node:internal/") == std::string::npos &&
          line.find("at node:internal/") == std::string::npos) {
        out += line + "\n";
      }
    }
    return out;
  };
  EXPECT_EQ(program_frames(warm.stderr_text), program_frames(cold.stderr_text)) << context;
  if (GetParam().language == "python") {
    EXPECT_EQ(warm.stderr_text, cold.stderr_text) << context;
  }
  EXPECT_EQ(warm.error.has_value(), cold.error.has_value()) << context;
  if (warm.error && cold.error) {
    EXPECT_EQ(ToJson(*warm.error), ToJson(*cold.error)) << context;
  }
  if (!ZygoteServes(GetParam().language)) return;
  // Forked from the language's zygote: the same again.
  ASSERT_TRUE(escape::ZygoteReady(*zygote_engine_, req.language));
  ExecutionResult forked = zygote_engine_->Run(req);
  const std::string forked_context = ToJson(forked).dump(2) + "\ncold:\n" + ToJson(cold).dump(2);
  EXPECT_EQ(forked.usage.start, "zygote") << forked_context;
  EXPECT_EQ(forked.status, cold.status) << forked_context;
  EXPECT_EQ(forked.exit_code, cold.exit_code) << forked_context;
  EXPECT_EQ(forked.stdout_text, cold.stdout_text) << forked_context;
  EXPECT_EQ(forked.stderr_text, cold.stderr_text) << forked_context;
  EXPECT_EQ(forked.error.has_value(), cold.error.has_value()) << forked_context;
  if (forked.error && cold.error) {
    EXPECT_EQ(ToJson(*forked.error), ToJson(*cold.error)) << forked_context;
  }
}

INSTANTIATE_TEST_SUITE_P(Languages, WarmSelfTest, ::testing::ValuesIn(escape::SelfTestCases(true)),
                         escape::SelfTestName);

}  // namespace
}  // namespace polyrun::engine
