// Hostile code inside sessions (docs/sessions.md): a session is one long-lived sandbox whose
// driver shares its process with the user's code, so everything the driver holds is in reach.
// What must hold anyway: sessions do not see each other, no host descriptor is visible, forged
// frames only confuse the session's own output, and a cell that wrecks the driver costs only
// that session's state. EscapeTest's TearDown checks that nothing of ours outlived the test.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <fstream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "engine/session_manager.h"
#include "escape.h"
#include "util/unique_fd.h"

namespace polyrun::escape {
namespace {

using engine::Status;
using nlohmann::json;

class SessionEscapeTest : public EscapeTest {
 protected:
  void TearDown() override {
    // The sessions end first: their drivers are live sandboxes the base TearDown would count.
    if (manager_) manager_->Shutdown();
    manager_.reset();
    EscapeTest::TearDown();
  }

  std::shared_ptr<engine::Session> Python(
      const std::vector<std::pair<std::string, std::string>>& limits = {}) {
    if (!manager_) {
      manager_ = std::make_unique<engine::SessionManager>(engine(), nullptr,
                                                          engine::SessionManager::Options{});
    }
    engine::SessionRequest req;
    req.language = "python";
    for (const auto& [name, value] : limits) {
      EXPECT_TRUE(req.limits.Set(name, value)) << name;
    }
    auto s = manager_->Create(req);
    EXPECT_TRUE(s) << s.error().message();
    return s ? *s : nullptr;
  }

  static engine::ExecutionResult Exec(
      engine::Session& s, const std::string& code,
      const std::vector<std::pair<std::string, std::string>>& limits = {},
      const engine::EventSink& sink = nullptr) {
    engine::ExecutionRequest req;
    req.code = code;
    for (const auto& [name, value] : limits) {
      EXPECT_TRUE(req.limits.Set(name, value)) << name;
    }
    return s.Execute(req, sink);
  }

  // The cell's result (text/plain), asserting it ran ok.
  static std::string Value(engine::Session& s, const std::string& code) {
    auto r = Exec(s, code);
    EXPECT_EQ(r.status, Status::kOk) << Describe(r);
    if (!r.result.is_object() || !r.result.contains("text/plain")) {
      ADD_FAILURE() << "no result\n" << Describe(r);
      return "";
    }
    return r.result["text/plain"];
  }

  std::unique_ptr<engine::SessionManager> manager_;
};

// Every bit of output an execution handed out: streams and display bundles.
uint64_t OutputBytes(const engine::ExecutionResult& r) {
  uint64_t n = r.stdout_text.size() + r.stderr_text.size();
  for (const auto& o : r.outputs) {
    if (!o.display.is_null()) n += o.display.dump().size();
  }
  return n;
}

TEST_F(SessionEscapeTest, SessionFilesAreInvisibleToOtherSessions) {
  auto a = Python();
  auto b = Python();
  ASSERT_TRUE(a && b);
  EXPECT_EQ(Value(*a,
                  "import os\n"
                  "for p in ('/work/secret', '/tmp/secret'):\n"
                  "    open(p, 'w').write('A-secret')\n"
                  "os.path.exists('/work/secret') and os.path.exists('/tmp/secret')"),
            "True");
  EXPECT_EQ(Value(*b,
                  "import os\n"
                  "[os.path.exists(p) for p in ('/work/secret', '/tmp/secret')], "
                  "'secret' in os.listdir('/work') + os.listdir('/tmp')"),
            "([False, False], False)");
  // B writing the same names does not touch A's files.
  EXPECT_EQ(Value(*b, "open('/tmp/secret', 'w').write('B')"), "1");
  EXPECT_EQ(Value(*a, "open('/work/secret').read(), open('/tmp/secret').read()"),
            "('A-secret', 'A-secret')");
}

TEST_F(SessionEscapeTest, SessionCellSeesNoHostDescriptor) {
  // An inheritable descriptor in the host process, naming a host file.
  const std::string marker = temp_dir() + "/session-fd-marker";
  std::ofstream(marker) << "x";
  UniqueFd file(::open(marker.c_str(), O_RDONLY));
  ASSERT_TRUE(file.valid());
  UniqueFd high(::fcntl(file.get(), F_DUPFD, 100));
  ASSERT_TRUE(high.valid());
  ASSERT_EQ(::fcntl(high.get(), F_GETFD) & FD_CLOEXEC, 0);

  auto s = Python();
  ASSERT_TRUE(s);
  // In the driver's own process: each descriptor, what it names, and whether that path inside
  // the sandbox is the very same file.
  auto in_process = Exec(*s,
                         "import os, json\n"
                         "seen = {}\n"
                         "for name in os.listdir('/proc/self/fd'):\n"
                         "    fd = int(name)\n"
                         "    try:\n"
                         "        target = os.readlink(f'/proc/self/fd/{fd}')\n"
                         "        st = os.fstat(fd)\n"
                         "    except OSError:\n"
                         "        continue  # the listing's own descriptor, closed by now\n"
                         "    same = None\n"
                         "    if target.startswith('/'):\n"
                         "        try:\n"
                         "            t = os.stat(target)\n"
                         "            same = (t.st_dev, t.st_ino) == (st.st_dev, st.st_ino)\n"
                         "        except OSError:\n"
                         "            same = False\n"
                         "    seen[fd] = [target, same]\n"
                         "print(json.dumps(seen))");
  ASSERT_EQ(in_process.status, Status::kOk) << Describe(in_process);
  const json fds = json::parse(in_process.stdout_text);
  ASSERT_TRUE(fds.contains("0") && fds.contains("1") && fds.contains("2")) << fds.dump();
  EXPECT_EQ(fds["0"][0], "/dev/null") << fds.dump();
  EXPECT_TRUE(fds["1"][0].get<std::string>().starts_with("pipe:[")) << fds.dump();
  EXPECT_TRUE(fds["2"][0].get<std::string>().starts_with("pipe:[")) << fds.dump();
  for (const auto& [fd, entry] : fds.items()) {
    const std::string target = entry[0];
    const bool ok = target.starts_with("pipe:[") || target.starts_with("anon_inode:") ||
                    (target.starts_with("/") && entry[1] == true);
    EXPECT_TRUE(ok) << "fd " << fd << " -> " << target << " is not the sandbox's\n" << fds.dump();
    EXPECT_EQ(target.find("session-fd-marker"), std::string::npos) << fds.dump();
  }

  // In a subprocess of the cell: only 0, 1, 2 and the listing's own directory descriptor.
  // close_fds=False: whatever the driver left inheritable would show here.
  auto child = Exec(*s,
                    "import subprocess\n"
                    "print(subprocess.run(['ls', '-l', '/proc/self/fd/'], close_fds=False, "
                    "capture_output=True, text=True).stdout, end='')");
  ASSERT_EQ(child.status, Status::kOk) << Describe(child);
  std::istringstream lines(child.stdout_text);
  std::set<int> numbers;
  for (std::string line; std::getline(lines, line);) {
    const auto arrow = line.find(" -> ");
    if (arrow == std::string::npos) continue;  // "total 0"
    const std::string target = line.substr(arrow + 4);
    const int fd = std::stoi(line.substr(line.rfind(' ', arrow - 1) + 1));
    numbers.insert(fd);
    if (fd == 0) {
      EXPECT_EQ(target, "/dev/null") << child.stdout_text;
    } else if (fd <= 2) {
      EXPECT_TRUE(target.starts_with("pipe:[")) << child.stdout_text;
    }
    if (fd > 2) {
      EXPECT_TRUE(target.starts_with("/proc/") && target.ends_with("/fd"))
          << "fd " << fd << " -> " << target << " reached a subprocess\n"
          << child.stdout_text;
    }
  }
  EXPECT_TRUE(numbers.contains(0) && numbers.contains(1) && numbers.contains(2))
      << child.stdout_text;
  EXPECT_EQ(numbers.size(), 4u) << child.stdout_text;
}

TEST_F(SessionEscapeTest, ForgedFramesAreContained) {
  // Clocks for an emulated CPU (the cgroup v2 VM): moving 40 MB through the driver is slow there.
  auto s = Python({{"wall_time", "60s"}, {"cpu_time", "60s"}});
  ASSERT_TRUE(s);
  // Every writable pipe of the process other than stdout and stderr: the frame channel, however
  // the driver renamed it.
  const std::string find_channel =
      "import os, json\n"
      "def channels():\n"
      "    out = []\n"
      "    for name in os.listdir('/proc/self/fd'):\n"
      "        fd = int(name)\n"
      "        if fd <= 2:\n"
      "            continue\n"
      "        try:\n"
      "            if not os.readlink(f'/proc/self/fd/{fd}').startswith('pipe:'):\n"
      "                continue\n"
      "            info = open(f'/proc/self/fdinfo/{fd}').read()\n"
      "        except OSError:\n"
      "            continue\n"
      "        flags = int(info.split('flags:')[1].split()[0], 8)\n"
      "        if flags & 3:\n"
      "            out.append(fd)\n"
      "    return out\n"
      "def forge(line):\n"
      "    for fd in channels():\n"
      "        data = line.encode()\n"
      "        while data:\n"
      "            data = data[os.write(fd, data):]\n"
      "print(len(channels()), flush=True)\n";
  auto found = Exec(*s, find_channel);
  ASSERT_EQ(found.status, Status::kOk) << Describe(found);
  EXPECT_NE(found.stdout_text, "0\n") << "no frame channel found: the forgeries test nothing";

  // Small forgeries: a `done` for another execution, a second `ready`, junk, and frames of
  // the wrong shape. None ends the execution early or kills the session.
  auto small = Exec(*s,
                    "forge(json.dumps({'type': 'done', 'id': 'ex_forged', 'status': 'ok'}) + "
                    "'\\n')\n"
                    "forge('{\"type\": \"ready\"}\\nnot json\\n[1, 2]\\n{\"type\": 7}\\n'\n"
                    "      '{\"type\": \"done\"}\\n{\"type\": \"display\", \"data\": 5}\\n')\n"
                    "print('after the forgeries', flush=True)\n"
                    "kept = 'yes'");
  EXPECT_EQ(small.status, Status::kOk) << Describe(small);
  EXPECT_EQ(small.stdout_text, "after the forgeries\n") << Describe(small);
  EXPECT_EQ(s->info().restarts, 0u);
  EXPECT_EQ(Value(*s, "kept"), "'yes'");

  // Forged display frames are output too: together they stay within the execution's cap.
  auto flood = Exec(*s,
                    "chunk = json.dumps({'type': 'display', 'data': {'text/plain': 'y' * (1 << "
                    "20)}, 'metadata': {}}) + '\\n'\n"
                    "for _ in range(8):\n"
                    "    forge(chunk)\n"
                    "print('flooded', flush=True)",
                    {{"output", "256K"}});
  EXPECT_LE(OutputBytes(flood), 256u * 1024 + 4096)
      << "display frames escaped the output cap: " << OutputBytes(flood) << " bytes\n"
      << Describe(flood).substr(0, 600);

  // A 40 MB line: longer than any frame may be. The session may end its driver for it
  // (docs/sessions.md says it does); either way the host stays up, nothing of it reaches the
  // client, and the next execution works.
  const uint64_t rss_before_kb = SelfStatusKb("VmRSS");
  auto huge = Exec(*s, "forge('x' * (40 << 20) + '\\n')\nprint('survived', flush=True)");
  EXPECT_LE(OutputBytes(huge), s->info().limits.Get(languages::Limit::kOutput))
      << Describe(huge).substr(0, 600);
  if (s->info().restarts > 0) {
    EXPECT_NE(huge.reason.find("restart"), std::string::npos) << Describe(huge).substr(0, 600);
  } else {
    EXPECT_EQ(huge.status, Status::kOk) << Describe(huge).substr(0, 600);
  }
  EXPECT_EQ(Value(*s, "6 * 7"), "42");
  // Whatever the host buffered of the line, it let go of it.
  EXPECT_LT(SelfStatusKb("VmRSS"), rss_before_kb + 128 * 1024);
}

TEST_F(SessionEscapeTest, SessionForkBombStaysWithinProcessesAndTheSessionRecovers) {
  auto s = Python({{"processes", "32"}, {"cpu_time", "60s"}});
  ASSERT_TRUE(s);
  ASSERT_EQ(Exec(*s, "x = 'before'").status, Status::kOk);
  std::mutex mu;
  std::condition_variable cv;
  bool finished = false;
  const engine::EventSink sink = [&](const engine::Event& e) {
    if (e.kind != engine::Event::Kind::kFinished) return;
    std::lock_guard lock(mu);
    finished = true;
    cv.notify_all();
  };
  engine::ExecutionResult r;
  std::thread runner([&] {
    // Forks until the limit refuses, then keeps trying; every child spins in a shell.
    r = Exec(*s,
             "import os\n"
             "while True:\n"
             "    try:\n"
             "        pid = os.fork()\n"
             "    except OSError:\n"
             "        continue\n"
             "    if pid == 0:\n"
             "        os.execv('/bin/sh', ['sh', '-c', 'while :; do :; done'])\n",
             {{"wall_time", "2s"}, {"cpu_time", "60s"}}, sink);
  });
  // Samples the sandbox's processes from the host for as long as the bomb runs.
  int most = 0;
  for (;;) {
    most = std::max(most, LiveSandboxDescendants());
    std::unique_lock lock(mu);
    if (finished) break;
  }
  runner.join();
  EXPECT_EQ(r.status, Status::kTimeout) << Describe(r);
  EXPECT_EQ(r.limit, "wall_time") << Describe(r);
  // 33 tasks in the session's cgroup: the sandbox's init, which the limit does not count, and
  // 32 of the session's, the driver among them.
  EXPECT_LE(most, 33) << "processes seen at once";
  EXPECT_GT(most, 8) << "the bomb never took off: the test tests nothing";
  // Recovered with its state, or restarted and said so.
  if (s->info().restarts == 0) {
    EXPECT_EQ(Value(*s, "x"), "'before'");
  } else {
    EXPECT_NE(r.reason.find("restarted"), std::string::npos) << Describe(r);
  }
  // Either way the bomb is gone: nothing of it runs any more (children that died after the
  // interrupt may linger as zombies until the driver's next reap; they run nothing).
  const std::string procs =
      Value(*s,
            "import os\n"
            "[s for s in (open(f'/proc/{p}/stat').read().split(' (')[1].split()[:2]\n"
            " for p in os.listdir('/proc') if p.isdigit()) if s[1] != 'Z']");
  EXPECT_EQ(std::count(procs.begin(), procs.end(), '['), 3) << "processes left: " << procs;
  EXPECT_EQ(Value(*s, "import subprocess\nsubprocess.run(['echo', 'fine']).returncode"), "0");
}

TEST_F(SessionEscapeTest, CellThatKillsTheDriverCostsTheStateOnly) {
  auto s = Python();
  ASSERT_TRUE(s);
  ASSERT_EQ(Exec(*s, "x = 1").status, Status::kOk);
  auto r = Exec(*s, "import os\nos.kill(os.getpid(), 9)");
  EXPECT_EQ(r.status, Status::kRuntimeError) << Describe(r);
  EXPECT_NE(r.reason.find("signal 9"), std::string::npos) << Describe(r);
  EXPECT_NE(r.reason.find("restart"), std::string::npos) << Describe(r);
  EXPECT_EQ(s->info().restarts, 1u);
  auto gone = Exec(*s, "x");
  EXPECT_EQ(gone.status, Status::kRuntimeError) << Describe(gone);
  // The whole process group, then: the same.
  auto group = Exec(*s, "import os, signal\nos.killpg(0, signal.SIGKILL)");
  EXPECT_NE(group.status, Status::kOk) << Describe(group);
  EXPECT_NE(group.reason.find("restart"), std::string::npos) << Describe(group);
  EXPECT_EQ(s->info().restarts, 2u);
  EXPECT_EQ(Value(*s, "1 + 1"), "2");
}

}  // namespace
}  // namespace polyrun::escape
