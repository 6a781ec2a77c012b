// DESIGN §6.7 (the host side never follows what the sandbox planted) and the checks this suite
// itself relies on.
#include <fcntl.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include "escape.h"
#include "sandbox/cgroup.h"
#include "util/unique_fd.h"

namespace polyrun::escape {
namespace {

using engine::Status;

class HostSideTest : public EscapeTest {
 protected:
  // The sandbox layer directly: a shell script with artifacts to collect.
  sandbox::SandboxOutcome RunShell(const std::string& script, std::vector<std::string> collect,
                                   const std::vector<sandbox::BindMount>& extra_binds = {}) {
    auto cgroups = sandbox::DetectCgroups();
    EXPECT_TRUE(cgroups) << cgroups.error().message();
    if (!cgroups) return {};
    sandbox::SandboxConfig config;
    config.cgroups = std::move(*cgroups);
    auto sb = sandbox::Sandbox::Create(std::move(config));
    EXPECT_TRUE(sb) << sb.error().message();
    if (!sb) return {};
    sandbox::SandboxSpec spec;
    spec.argv = {"/bin/sh", "-c", script};
    spec.env = {"PATH=/usr/bin:/bin"};
    for (const char* p : {"/usr", "/bin", "/lib", "/lib64", "/etc/ld.so.cache"}) {
      spec.binds.push_back(
          {p, std::string_view(p) == "/lib64" || std::string_view(p) == "/etc/ld.so.cache", ""});
    }
    spec.binds.insert(spec.binds.end(), extra_binds.begin(), extra_binds.end());
    spec.collect = std::move(collect);
    spec.limits.wall_time = sandbox::Millis(5000);
    if (adjust_) adjust_(spec);
    auto outcome = (*sb)->Run(spec);
    EXPECT_TRUE(outcome) << outcome.error().message();
    return outcome ? *outcome : sandbox::SandboxOutcome{};
  }
  // Applied to the next RunShell's spec (the session channels).
  std::function<void(sandbox::SandboxSpec&)> adjust_;
};

std::string Keys(const std::map<std::string, std::string>& m) {
  std::string out;
  for (const auto& [k, v] : m) out += k + "(" + std::to_string(v.size()) + " bytes) ";
  return out;
}

TEST_F(HostSideTest, ABindSourceUnderTmpIsBoundReadOnlyAtItsTarget) {
  // A checkout under /tmp (where the root is usually staged) still binds; it stays read-only.
  const std::filesystem::path dir = "/tmp/polyrun-bind-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "recipe.sh") << "echo from the recipe folder\n";
  auto out = RunShell("sh /lang/recipe.sh; echo x > /lang/new 2>/dev/null || echo refused", {},
                      {{dir.string(), false, "/lang"}});
  // DESIGN §6.1: read-only, nosuid, nodev, whatever the files' own modes.
  auto mount = RunShell("grep ' /lang ' /proc/self/mounts", {}, {{dir.string(), false, "/lang"}});
  std::filesystem::remove_all(dir);
  EXPECT_EQ(out.termination, sandbox::Termination::kExited) << out.setup_error;
  EXPECT_EQ(out.stdout_data, "from the recipe folder\nrefused\n") << out.stderr_data;
  EXPECT_NE(mount.stdout_data.find(" ro,"), std::string::npos)
      << mount.stdout_data << mount.stderr_data;
  EXPECT_NE(mount.stdout_data.find("nosuid"), std::string::npos) << mount.stdout_data;
  EXPECT_NE(mount.stdout_data.find("nodev"), std::string::npos) << mount.stdout_data;
}

TEST_F(HostSideTest, PlantedSymlinksAreNotCollected) {
  // A host file the sandbox cannot see; a symlink to its path must not make it an artifact.
  const std::string secret = temp_dir() + "/artifact-secret";
  std::ofstream(secret) << "HOST-SECRET-CONTENT";
  ASSERT_TRUE(std::filesystem::exists(secret));
  auto o = RunShell(
      "echo control > ok\n"
      "ln -s /etc/passwd out\n"
      "ln -s " +
          secret +
          " secret\n"
          "ln -s /proc/1/environ environ\n"
          "ln -s ok ok-link\n"
          "mkdir dir\n",
      {"ok", "out", "secret", "environ", "ok-link", "dir"});
  EXPECT_EQ(o.termination, sandbox::Termination::kExited) << o.setup_error << o.stderr_data;
  EXPECT_EQ(o.exit_code, 0) << o.stderr_data;
  // Only the regular file comes back; no symlink is followed, whatever it points at.
  EXPECT_EQ(o.artifacts.size(), 1u) << Keys(o.artifacts);
  EXPECT_EQ(o.artifacts["ok"], "control\n");
  for (const auto& [name, data] : o.artifacts) {
    EXPECT_EQ(data.find("HOST-SECRET"), std::string::npos) << name;
    EXPECT_EQ(data.find("root:x:0:0"), std::string::npos) << name;
  }
}

TEST_F(HostSideTest, PlantedFifoDoesNotHangCollection) {
  // Opening a FIFO for reading blocks until a writer comes: collection must not.
  auto o = RunShell("mkfifo out\necho control > ok\n", {"out", "ok"});
  EXPECT_EQ(o.termination, sandbox::Termination::kExited) << o.setup_error << o.stderr_data;
  EXPECT_EQ(o.exit_code, 0) << o.stderr_data;
  EXPECT_LT(o.wall.count(), 1000) << "collection waited on the FIFO";
  EXPECT_EQ(o.artifacts.size(), 1u) << Keys(o.artifacts);
  EXPECT_EQ(o.artifacts["ok"], "control\n");
}

TEST_F(HostSideTest, ArtifactSwappedForSymlinkByADaemonIsNotFollowed) {
  // The program exits, leaving a daemon that keeps replacing `out` by a symlink and back while
  // the init collects it. Whatever the timing, only a regular file's content may come back.
  auto o = RunShell(
      "echo control > out\n"
      "( trap '' HUP TERM; while :; do ln -sf /etc/passwd out.new && mv -f out.new out;"
      " echo control > out.tmp && mv -f out.tmp out; done ) </dev/null >/dev/null 2>&1 &\n"
      "while [ ! -L out ]; do :; done\n",
      {"out"});
  EXPECT_EQ(o.termination, sandbox::Termination::kExited) << o.setup_error << o.stderr_data;
  for (const auto& [name, data] : o.artifacts) {
    EXPECT_EQ(name, "out");
    EXPECT_EQ(data, "control\n") << "a symlink was followed";
  }
  EXPECT_LT(o.wall.count(), 2000);
}

TEST_F(HostSideTest, ArgumentsNeverReachAShell) {
  const std::string marker = "/tmp/polyrun-escape-pwned-" + std::to_string(::getpid());
  const std::vector<std::string> args = {"; touch " + marker, "$(touch " + marker + ")",
                                         "`touch " + marker + "`", "' \" \\ | & > " + marker};
  auto r = Run("c",
               "#include <stdio.h>\n"
               "int main(int argc, char** argv) {\n"
               "  for (int i = 1; i < argc; ++i) printf(\"[%s]\\n\", argv[i]);\n"
               "  return 0;\n"
               "}\n",
               {.args = args});
  EXPECT_EQ(r.status, Status::kOk) << Describe(r);
  std::string expected;
  for (const auto& a : args) expected += "[" + a + "]\n";
  EXPECT_EQ(r.stdout_text, expected);
  EXPECT_FALSE(std::filesystem::exists(marker));
}

// The suite's own checks must be able to fail: while a run is live, its processes and cgroups
// are visible to them. (The run is then cancelled, which must end the whole tree too.)
TEST_F(HostSideTest, LeftoverChecksSeeALiveRun) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  UniqueFd cancel_r(fds[0]), cancel_w(fds[1]);
  int live_processes = -1;
  size_t live_flagged = 0, live_cgroups = 0;
  bool checked = false;
  RunOptions options;
  options.limits = {{"wall_time", "10s"}};
  options.cancel_fd = cancel_r.get();
  options.sink = [&](const engine::Event& e) {
    if (e.kind != engine::Event::Kind::kStdout || checked) return;
    checked = true;
    live_processes = LiveSandboxDescendants();
    live_flagged = LeakedSandboxProcesses(before_).size();
    live_cgroups = OurRunCgroups().size();
    ASSERT_EQ(::write(cancel_w.get(), "x", 1), 1);
  };
  auto r = Run("bash", "( trap '' HUP TERM; exec sleep 1000 ) &\necho ready\nexec sleep 1000\n",
               options);
  EXPECT_TRUE(checked) << Describe(r);
  // The init, bash (now sleep) and the background sleep.
  EXPECT_GE(live_processes, 3) << Describe(r);
  EXPECT_EQ(live_flagged, static_cast<size_t>(live_processes))
      << "TearDown's check would miss them";
  EXPECT_EQ(live_cgroups, PolyrunCgroupDirs().size());
  EXPECT_EQ(r.status, Status::kCancelled) << Describe(r);
  EXPECT_LT(r.usage.wall_ms, 2000u) << Describe(r);
  EXPECT_EQ(RunnableSandboxDescendants(), std::vector<std::string>{});
  auto settled = engine().sandbox().Settle();
  EXPECT_TRUE(settled) << settled.error().message();
  EXPECT_EQ(LiveSandboxDescendants(), 0);
  EXPECT_TRUE(OurRunCgroups().empty());
}

// DESIGN §6.5 (docs/performance.md, "The end of a run"): when Run returns, every process of the
// run has been sent SIGKILL (or is exiting) and runs none of its code again, though the kernel
// may still be tearing it down; once the teardown is done (Settle), nothing of it is left,
// cgroups included. (Here the init's own exit usually beats the check; the warm suite's
// AProgramThatForgesItsEndOnlyEndsItself is the case only the host's kill stops.)
TEST_F(HostSideTest, NothingOfARunRunsOnceItReturns) {
  auto r = Run("bash",
               "( trap '' HUP TERM INT; while :; do :; done ) &\n"
               "( trap '' HUP TERM INT; exec sleep 1000 ) &\n"
               "echo started\n");
  const std::vector<std::string> runnable = RunnableSandboxDescendants();
  EXPECT_EQ(r.status, Status::kOk) << Describe(r);
  EXPECT_EQ(r.stdout_text, "started\n");
  EXPECT_EQ(runnable, std::vector<std::string>{}) << "processes of the run could still run";
  auto settled = engine().sandbox().Settle();
  EXPECT_TRUE(settled) << settled.error().message();
  EXPECT_EQ(LiveSandboxDescendants(), 0);
  EXPECT_TRUE(OurRunCgroups().empty());
}

// The session channels (docs/sessions.md). Fd 3 exists only when asked for; a frame is
// delivered after every byte the program wrote to stdout before it.
TEST_F(HostSideTest, FramesChannelIsFdThreeOnlyWhenAskedAndOrderedAfterEarlierOutput) {
  auto plain = RunShell("[ -e /proc/self/fd/3 ] && echo open || echo closed", {});
  EXPECT_EQ(plain.stdout_data, "closed\n") << plain.stderr_data;

  std::string log;
  adjust_ = [&](sandbox::SandboxSpec& spec) {
    spec.frames_channel = true;
    spec.on_output = [&](sandbox::Stream, std::string_view c) { log += c; };
    spec.on_frames = [&](std::string_view c) { log += "[" + std::string(c) + "]"; };
  };
  auto out = RunShell(
      "[ -p /proc/self/fd/3 ] || echo not-a-pipe; for i in 1 2 3 4 5 6 7 8 9; do "
      "printf \"o$i \"; printf \"f$i\" >&3; done",
      {});
  EXPECT_EQ(out.termination, sandbox::Termination::kExited) << out.setup_error;
  EXPECT_EQ(log.find("not-a-pipe"), std::string::npos) << log;
  for (int i = 1; i <= 9; ++i) {
    const std::string o = "o" + std::to_string(i) + " ", f = "f" + std::to_string(i);
    ASSERT_NE(log.find(o), std::string::npos) << log;
    ASSERT_NE(log.find(f), std::string::npos) << log;
    EXPECT_LT(log.find(o), log.find(f)) << "frame before the output written ahead of it: " << log;
  }
}

// Signal numbers on signal_fd reach the program's process group through the init; anything
// the init does not forward (SIGKILL would kill the init itself) is dropped.
TEST_F(HostSideTest, SignalFdForwardsOnlyForwardableSignals) {
  UniqueFd sig_r, sig_w;
  {
    int fds[2];
    ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    sig_r.reset(fds[0]);
    sig_w.reset(fds[1]);
  }
  std::string out;
  adjust_ = [&](sandbox::SandboxSpec& spec) {
    spec.signal_fd = sig_r.get();
    spec.on_output = [&](sandbox::Stream stream, std::string_view c) {
      if (stream != sandbox::Stream::kStdout) return;  // the shell reports the killed sleep
      out += c;
      // Each step is answered by the program's trap before the next signal goes out.
      if (c.find("ready") != std::string_view::npos) {
        const unsigned char s[2] = {SIGKILL, SIGINT};
        ASSERT_EQ(::write(sig_w.get(), s, 2), 2);
      }
      if (c.find("got-int") != std::string_view::npos) {
        const unsigned char s = SIGTERM;
        ASSERT_EQ(::write(sig_w.get(), &s, 1), 1);
      }
    };
  };
  auto r = RunShell(
      "trap 'echo got-int' INT; trap 'echo got-term; exit 7' TERM; echo ready; "
      "while :; do sleep 0.02; done",
      {});
  EXPECT_EQ(r.termination, sandbox::Termination::kExited) << r.setup_error << out;
  EXPECT_EQ(r.exit_code, 7) << out;
  EXPECT_EQ(out, "ready\ngot-int\ngot-term\n");
}

// Sessions keep no copy of the output and enforce their own caps per execution.
TEST_F(HostSideTest, UnretainedOutputIsStreamedOnlyAndNotCapped) {
  uint64_t seen = 0;
  adjust_ = [&](sandbox::SandboxSpec& spec) {
    spec.retain_output = false;
    spec.limits.stdout_bytes = spec.limits.output_bytes = 64 << 10;
    spec.on_output = [&](sandbox::Stream, std::string_view c) { seen += c.size(); };
  };
  auto r = RunShell("head -c 1000000 /dev/zero", {});
  EXPECT_EQ(r.termination, sandbox::Termination::kExited) << r.setup_error;
  EXPECT_TRUE(r.stdout_data.empty());
  EXPECT_EQ(seen, 1000000u);
}

// The program starts with a clean signal state whatever the calling thread had (`serve` blocks
// SIGINT/SIGTERM, `run` ignores SIGPIPE): otherwise it could never be interrupted.
TEST_F(HostSideTest, ProgramStartsWithNoSignalBlockedOrIgnored) {
  std::string status;
  std::thread caller([&] {
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, nullptr);
    status = RunShell("exec grep -E '^Sig(Blk|Ign)' /proc/self/status", {}).stdout_data;
  });
  caller.join();
  struct sigaction ignore {
  }, previous{};
  ignore.sa_handler = SIG_IGN;
  ::sigaction(SIGPIPE, &ignore, &previous);
  status += RunShell("exec grep -E '^SigIgn' /proc/self/status", {}).stdout_data;
  ::sigaction(SIGPIPE, &previous, nullptr);
  EXPECT_EQ(status,
            "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n"
            "SigIgn:\t0000000000000000\n");
}

// A program that cannot be executed is reported as such, naming the call, the file and the
// error; the init, which shares its memory with the program until the program's execve, goes on
// to report it (docs/performance.md, "The cold path").
TEST_F(HostSideTest, AProgramThatCannotBeExecutedIsReportedWithItsError) {
  for (const auto& [path, error] : std::vector<std::pair<std::string, std::string>>{
           {"/usr/bin/polyrun-no-such-program", "No such file or directory"},
           {"/etc/ld.so.cache", "Permission denied"}}) {
    adjust_ = [&](sandbox::SandboxSpec& spec) { spec.argv = {path}; };
    auto r = RunShell("", {});
    EXPECT_EQ(r.termination, sandbox::Termination::kExecFailed) << path;
    EXPECT_EQ(r.setup_error, "execve " + path + ": " + error);
  }
  adjust_ = nullptr;
  EXPECT_EQ(RunShell("echo after", {}).stdout_data, "after\n");
}

// DESIGN §6.5: the host writes a run's stdin into a pipe whose reader is the program. One that
// ends without reading it must not end the host (SIGPIPE's default action) at the next write.
TEST_F(HostSideTest, AProgramThatLeavesItsInputUnreadDoesNotEndTheHost) {
  RunOptions options;
  options.stdin_data = std::string(4 << 20, 'x');  // far more than a pipe holds
  for (const char* code : {"print('gone')", "import os\nos.close(0)\nprint('closed')"}) {
    auto r = Run("python", code, options);
    EXPECT_EQ(r.status, Status::kOk) << Describe(r);
  }
  ExpectResponsive();
}

}  // namespace
}  // namespace polyrun::escape
