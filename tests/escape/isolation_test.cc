// DESIGN §6.1, 6.2, 6.7 (fds) and 6.8: what a program can see, touch and reach.
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "escape.h"
#include "util/unique_fd.h"

namespace polyrun::escape {
namespace {

using engine::Status;

class IsolationTest : public EscapeTest {
 protected:
  // inspect.c prints "<path> <errno>" lines for write/mkdir/read/open_write.
  std::map<std::string, int> PathErrnos(const std::string& probe,
                                        const std::vector<std::string>& paths) {
    std::vector<std::string> args = {probe};
    args.insert(args.end(), paths.begin(), paths.end());
    auto r = RunProgram("inspect.c", {.args = args});
    EXPECT_EQ(r.status, Status::kOk) << Describe(r);
    std::map<std::string, int> out;
    std::istringstream lines(r.stdout_text);
    std::string path;
    int err = 0;
    while (lines >> path >> err) out[path] = err;
    EXPECT_EQ(out.size(), paths.size()) << Describe(r);
    return out;
  }

  // Lines "Key:\tvalue" of a /proc status-like text.
  static std::map<std::string, std::string> StatusFields(const std::string& text) {
    std::map<std::string, std::string> out;
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
      auto colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string value = line.substr(colon + 1);
      value.erase(0, value.find_first_not_of(" \t"));
      value.erase(value.find_last_not_of(" \t") + 1);
      out[line.substr(0, colon)] = value;
    }
    return out;
  }
};

std::string Tag() {
  return "polyrun-escape-" + std::to_string(::getpid());
}

TEST_F(IsolationTest, RootUsrEtcAndDevAreReadOnly) {
  const std::string t = Tag();
  std::vector<std::string> creates = {"/" + t,     "/usr/" + t, "/usr/lib/" + t, "/usr/bin/" + t,
                                      "/etc/" + t, "/bin/" + t, "/lib/" + t,     "/dev/" + t};
  for (const auto& [path, err] : PathErrnos("write", creates)) {
    EXPECT_TRUE(err == EROFS || err == EACCES) << path << ": errno " << err;
  }
  for (const auto& [path, err] :
       PathErrnos("mkdir", {"/" + t + "-d", "/usr/" + t + "-d", "/etc/" + t + "-d"})) {
    EXPECT_TRUE(err == EROFS || err == EACCES) << path << ": errno " << err;
  }
  // Existing files: the sandbox's own /etc/passwd (owned by the sandbox user, so only the
  // read-only mount stops it) and host files bound in.
  for (const auto& [path, err] :
       PathErrnos("open_write", {"/etc/passwd", "/etc/ld.so.cache", "/usr/bin/gcc", "/bin/sh"})) {
    EXPECT_TRUE(err == EROFS || err == EACCES) << path << ": errno " << err;
  }
  // Nothing appeared on the host through the binds.
  for (const char* dir : {"/usr/", "/usr/lib/", "/usr/bin/", "/etc/", "/bin/", "/lib/"}) {
    EXPECT_FALSE(std::filesystem::exists(std::string(dir) + t)) << dir << t;
    EXPECT_FALSE(std::filesystem::exists(std::string(dir) + t + "-d")) << dir << t << "-d";
  }
  // Control: the writable places are writable.
  for (const auto& [path, err] : PathErrnos("write", {"/work/" + t, "/tmp/" + t})) {
    EXPECT_EQ(err, 0) << path;
  }
}

TEST_F(IsolationTest, HostSecretsAreAbsent) {
  // A secret on the host, outside every bind.
  const std::string secret = temp_dir() + "/secret-" + Tag();
  std::ofstream(secret) << "TOPSECRET";
  ASSERT_TRUE(std::filesystem::exists(secret));
  auto errs = PathErrnos(
      "read", {"/etc/shadow", "/etc/gshadow", "/root", "/home", "/var", "/sys", "/boot", "/run",
               "/etc/hostname", "/etc/ssh", secret, temp_dir(), "/work/shared/DESIGN.md"});
  for (const auto& [path, err] : errs) EXPECT_EQ(err, ENOENT) << path;
  // The sandbox's root holds only what the language binds and the sandbox's own mounts.
  auto r = RunProgram("inspect.c", {.args = {"ls", "/", "/etc", "/dev"}});
  EXPECT_EQ(r.status, Status::kOk) << Describe(r);
  std::istringstream lines(r.stdout_text);
  std::string root, etc, dev;
  std::getline(lines, root);
  std::getline(lines, etc);
  std::getline(lines, dev);
  EXPECT_EQ(root, "/: bin dev etc lib lib64 proc tmp usr work");
  // /etc: the sandbox's passwd, group and hosts plus the c language's binds.
  std::istringstream etc_words(etc.substr(etc.find(':') + 1));
  for (std::string e; etc_words >> e;) {
    EXPECT_TRUE(e == "passwd" || e == "group" || e == "hosts" || e == "ld.so.cache" ||
                e == "alternatives" || e == "localtime")
        << "unexpected /etc/" << e;
  }
  EXPECT_EQ(dev, "/dev: fd full null random shm stderr stdin stdout urandom zero");
  auto passwd = RunProgram("inspect.c", {.args = {"cat", "/etc/passwd"}});
  EXPECT_EQ(passwd.stdout_text,
            "root:x:0:0:root:/root:/bin/sh\n"
            "sandbox:x:1000:1000:sandbox:/work:/bin/sh\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n");
}

TEST_F(IsolationTest, ProcShowsOnlyTheSandboxesOwnProcesses) {
  const std::string self = std::to_string(::getpid());
  const std::string parent = std::to_string(::getppid());
  auto r = RunProgram("inspect.c", {.args = {"proc", self, parent}});
  EXPECT_EQ(r.status, Status::kOk) << Describe(r);
  auto kv = ParsePairs(r.stdout_text);
  EXPECT_EQ(kv["pid"], "2") << Describe(r);
  EXPECT_EQ(kv["ppid"], "1") << Describe(r);
  EXPECT_EQ(kv["pids"], "1,2,") << Describe(r);
  // Host pids: no /proc entry, no signal.
  EXPECT_NE(r.stdout_text.find("host " + self + " open=" + std::to_string(ENOENT) +
                               " kill=" + std::to_string(ESRCH)),
            std::string::npos)
      << Describe(r);
  EXPECT_NE(r.stdout_text.find("host " + parent + " open=" + std::to_string(ENOENT) +
                               " kill=" + std::to_string(ESRCH)),
            std::string::npos)
      << Describe(r);
  // PID 1 is the sandbox's init (its parent is outside the namespace, hence 0).
  auto init =
      StatusFields(RunProgram("inspect.c", {.args = {"cat", "/proc/1/status"}}).stdout_text);
  EXPECT_EQ(init["Name"], "polyrun-init");
  EXPECT_EQ(init["PPid"], "0");
  EXPECT_EQ(init["NSpid"], "1");
  // The init (PID 1) is not dumpable: its memory, fds, environment and root are closed.
  auto errs = PathErrnos(
      "read", {"/proc/1/environ", "/proc/1/mem", "/proc/1/fd", "/proc/1/root", "/proc/1/maps"});
  // Files the kernel shows in every namespace must refuse the write; per-netns files may be
  // absent on some kernels (6.1 has no net.core.somaxconn in a new netns): absent is fine too.
  for (const auto& [path, err] : errs) {
    if (path.find("/net/") != std::string::npos && err == ENOENT) continue;
    EXPECT_EQ(err, EACCES) << path;
  }
  // The cgroup namespace: the run's own cgroup is the root, no host path shows.
  auto cg = RunProgram("inspect.c", {.args = {"cat", "/proc/self/cgroup"}});
  std::istringstream lines(cg.stdout_text);
  int n = 0;
  for (std::string line; std::getline(lines, line); ++n) {
    EXPECT_TRUE(line.ends_with(":/")) << line;
  }
  EXPECT_GT(n, 0) << Describe(cg);
}

TEST_F(IsolationTest, InitLeaksNothingOfTheHostCommandLine) {
  // /proc/1/cmdline is world-readable whatever the dumpable flag: the init, a clone of the
  // polyrun process, must not show the host's argv (which may name config files or secrets).
  std::string self_cmdline;
  {
    std::ifstream in("/proc/self/cmdline", std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    self_cmdline = s.str();
  }
  const std::string argv0 = self_cmdline.substr(0, self_cmdline.find('\0'));
  ASSERT_FALSE(argv0.empty());
  auto r = RunProgram("inspect.c", {.args = {"cmdline"}});
  EXPECT_EQ(r.status, Status::kOk) << Describe(r);
  ASSERT_NE(r.stdout_text.find("text="), std::string::npos) << Describe(r);
  EXPECT_EQ(r.stdout_text.find(argv0), std::string::npos) << Describe(r);
  EXPECT_EQ(r.stdout_text.find("escape_test"), std::string::npos) << Describe(r);
  auto status = RunProgram("inspect.c", {.args = {"cat", "/proc/1/status"}});
  auto fields = StatusFields(status.stdout_text);
  EXPECT_EQ(fields["Name"].find("escape"), std::string::npos) << fields["Name"];
}

TEST_F(IsolationTest, HostEnvironmentDoesNotLeakIn) {
  ASSERT_EQ(::setenv("POLYRUN_ESCAPE_HOST_SECRET", "hunter2", 1), 0);
  auto r = Run("bash", "env\n");
  ::unsetenv("POLYRUN_ESCAPE_HOST_SECRET");
  EXPECT_EQ(r.status, Status::kOk) << Describe(r);
  EXPECT_NE(r.stdout_text.find("HOME=/work"), std::string::npos) << Describe(r);
  EXPECT_EQ(r.stdout_text.find("hunter2"), std::string::npos) << Describe(r);
}

TEST_F(IsolationTest, PidOneCannotBeKilledOrStoppedFromInside) {
  auto r = RunProgram("inspect.c", {.args = {"init_kill"}, .limits = {{"wall_time", "5s"}}});
  EXPECT_EQ(r.status, Status::kOk) << Describe(r);
  EXPECT_EQ(r.stdout_text, "kill=0 stop=0 alive=1\n") << Describe(r);
  EXPECT_LT(r.usage.wall_ms, 1000u) << "a stopped init would hang the run: " << Describe(r);
}

TEST_F(IsolationTest, NetworkEgressIsUnreachable) {
  for (const char* target : {"4 1.1.1.1 53 tcp", "4 1.1.1.1 53 udp", "4 10.0.0.1 80 tcp",
                             "4 169.254.169.254 80 tcp", "6 2606:4700:4700::1111 53 tcp"}) {
    std::istringstream words(target);
    std::vector<std::string> args = {"connect"};
    for (std::string w; words >> w;) args.push_back(w);
    auto r = RunProgram("inspect.c", {.args = args});
    EXPECT_EQ(r.status, Status::kOk) << Describe(r);
    EXPECT_EQ(ParsePairs(r.stdout_text)["errno"], std::to_string(ENETUNREACH))
        << target << ": " << Describe(r);
  }
}

TEST_F(IsolationTest, HostLoopbackIsNotReachable) {
  // A listener on the host's loopback: the sandbox's 127.0.0.1 is its own.
  UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  ASSERT_TRUE(listener.valid());
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  ASSERT_EQ(::listen(listener.get(), 8), 0);
  socklen_t len = sizeof sa;
  ASSERT_EQ(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&sa), &len), 0);
  const std::string port = std::to_string(ntohs(sa.sin_port));
  auto r = RunProgram("inspect.c", {.args = {"connect", "4", "127.0.0.1", port, "tcp"}});
  EXPECT_EQ(r.status, Status::kOk) << Describe(r);
  EXPECT_EQ(ParsePairs(r.stdout_text)["errno"], std::to_string(ECONNREFUSED)) << Describe(r);
  // Nothing reached the listener.
  EXPECT_LT(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC), 0);
  EXPECT_EQ(errno, EAGAIN);
}

TEST_F(IsolationTest, HostAbstractUnixSocketIsNotReachable) {
  // Abstract unix sockets belong to the network namespace: the host's are out of reach.
  const std::string name = "polyrun-escape-" + std::to_string(::getpid());
  UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  ASSERT_TRUE(listener.valid());
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path + 1, name.data(), name.size());
  const auto len = static_cast<socklen_t>(sizeof(sa_family_t) + 1 + name.size());
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&sa), len), 0);
  ASSERT_EQ(::listen(listener.get(), 8), 0);
  auto r = RunProgram("inspect.c", {.args = {"unix_abstract", name}});
  EXPECT_EQ(r.status, Status::kOk) << Describe(r);
  EXPECT_EQ(r.stdout_text, "unix_abstract errno=" + std::to_string(ECONNREFUSED) + "\n")
      << Describe(r);
  EXPECT_LT(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC), 0);
  EXPECT_EQ(errno, EAGAIN);
}

TEST_F(IsolationTest, NoPrivilegesInside) {
  auto r = RunProgram("inspect.c", {.args = {"cat", "/proc/self/status"}});
  EXPECT_EQ(r.status, Status::kOk) << Describe(r);
  auto f = StatusFields(r.stdout_text);
  for (const char* cap : {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"}) {
    EXPECT_EQ(f[cap], "0000000000000000") << cap;
  }
  EXPECT_EQ(f["NoNewPrivs"], "1");
  EXPECT_EQ(f["Seccomp"], "2");
  EXPECT_EQ(f["Uid"], "1000\t1000\t1000\t1000");
  EXPECT_EQ(f["Gid"], "1000\t1000\t1000\t1000");
  EXPECT_EQ(f["Groups"], "");
}

TEST_F(IsolationTest, SetuidBinariesGainNothing) {
  // passwd and mount are setuid root on the host; inside, the bit shows but does nothing:
  // the loader sees no privilege change (AT_SECURE 0, euid 1000) and mount refuses.
  auto r = Run("bash",
               "stat -c '%A' /usr/bin/passwd /usr/bin/mount\n"
               "LD_SHOW_AUXV=1 /usr/bin/passwd --help | grep -E '^AT_(EUID|SECURE):'\n"
               "/usr/bin/mount -t tmpfs none /tmp 2>/dev/null; echo \"mount=$?\"\n");
  EXPECT_EQ(r.status, Status::kOk) << Describe(r);
  EXPECT_TRUE(r.stdout_text.starts_with("-rwsr-xr-x\n-rwsr-xr-x\n")) << Describe(r);
  auto kv = ParsePairs(r.stdout_text);
  std::istringstream lines(r.stdout_text);
  std::map<std::string, std::string> aux;
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with("AT_")) {
      std::istringstream w(line);
      std::string k, v;
      w >> k >> v;
      aux[k] = v;
    }
  }
  EXPECT_EQ(aux["AT_EUID:"], "1000") << Describe(r);
  EXPECT_EQ(aux["AT_SECURE:"], "0") << Describe(r);
  EXPECT_NE(kv["mount"], "0") << Describe(r);
  EXPECT_NE(kv["mount"], "") << Describe(r);
}

TEST_F(IsolationTest, CompileStageSeesNoHostSecrets) {
  // Hostile source attacks at compile time: the compiler runs in the sandbox too.
  const std::string secret = temp_dir() + "/compile-secret";
  std::ofstream(secret) << "int leaked = 1;";
  for (const std::string& path : {std::string("/etc/shadow"), secret}) {
    auto r = Run("c", "#include \"" + path + "\"\nint main(void) { return 0; }\n",
                 {.must_compile = false});
    EXPECT_EQ(r.status, Status::kCompileError) << path << ": " << Describe(r);
    ASSERT_TRUE(r.compile.has_value());
    EXPECT_NE(r.compile->stderr_text.find("No such file or directory"), std::string::npos)
        << path << ": " << r.compile->stderr_text;
  }
}

TEST_F(IsolationTest, ProcSysIsNotWritable) {
  auto errs =
      PathErrnos("open_write", {"/proc/sys/kernel/hostname", "/proc/sys/vm/drop_caches",
                                "/proc/sys/net/ipv4/ip_forward", "/proc/sys/kernel/core_pattern",
                                "/proc/sys/net/core/somaxconn"});
  // Files the kernel shows in every namespace must refuse the write; per-netns files may be
  // absent on some kernels (6.1 has no net.core.somaxconn in a new netns): absent is fine too.
  for (const auto& [path, err] : errs) {
    if (path.find("/net/") != std::string::npos && err == ENOENT) continue;
    EXPECT_EQ(err, EACCES) << path;
  }
}

TEST_F(IsolationTest, NoDescriptorLeaksIn) {
  // Inheritable descriptors in the polyrun process, at a low and a high number.
  const std::string marker = temp_dir() + "/leaked-fd-marker";
  std::ofstream(marker) << "x";
  UniqueFd file(::open(marker.c_str(), O_RDONLY));
  ASSERT_TRUE(file.valid());
  UniqueFd low(::fcntl(file.get(), F_DUPFD, 5));
  UniqueFd high(::fcntl(file.get(), F_DUPFD, 150));
  UniqueFd sock(::socket(AF_INET, SOCK_STREAM, 0));
  ASSERT_TRUE(low.valid() && high.valid() && sock.valid());
  for (int fd : {file.get(), low.get(), high.get(), sock.get()}) {
    ASSERT_EQ(::fcntl(fd, F_GETFD) & FD_CLOEXEC, 0) << "fd " << fd << " must be inheritable";
  }
  auto r = RunProgram("inspect.c", {.args = {"fds"}});
  EXPECT_EQ(r.status, Status::kOk) << Describe(r);
  auto fds = ParsePairs(r.stdout_text)["fds"];
  // Exactly 0, 1 and 2, all pipes.
  std::istringstream entries(fds);
  std::vector<std::string> seen;
  for (std::string e; std::getline(entries, e, ',');) seen.push_back(e);
  ASSERT_EQ(seen.size(), 3u) << fds;
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(seen[i].starts_with(std::to_string(i) + ":pipe:[")) << seen[i];
  }
  EXPECT_EQ(fds.find("leaked-fd-marker"), std::string::npos) << fds;
}

TEST_F(IsolationTest, NothingPersistsIntoTheNextRun) {
  auto first = RunProgram("inspect.c", {.args = {"persist_write"}});
  EXPECT_EQ(first.status, Status::kOk) << Describe(first);
  EXPECT_EQ(first.stdout_text,
            "/tmp/polyrun-x written=1 exists=1\n"
            "/work/polyrun-x written=1 exists=1\n"
            "/dev/shm/polyrun-x written=1 exists=1\n"
            "shm created=1\n"
            "abstract bound=1\n");
  auto second = RunProgram("inspect.c", {.args = {"persist_check"}});
  EXPECT_EQ(second.status, Status::kOk) << Describe(second);
  EXPECT_EQ(second.stdout_text,
            "/tmp/polyrun-x exists=0\n"
            "/work/polyrun-x exists=0\n"
            "/dev/shm/polyrun-x exists=0\n"
            "shm exists=0\n"
            "abstract exists=0\n");
  // And not on the host either.
  EXPECT_FALSE(std::filesystem::exists("/tmp/polyrun-x"));
  EXPECT_FALSE(std::filesystem::exists("/dev/shm/polyrun-x"));
}

// The compiled-artifact cache is the one thing kept between runs: a run can neither change the
// binary the next identical run executes nor see where it is kept.
TEST_F(IsolationTest, ARunCannotTamperWithTheCachedBinaryOrSeeTheCache) {
  const std::string evil = R"(#include <stdio.h>
#include <unistd.h>
#include <fcntl.h>
int main(int argc, char** argv) {
  unlink("/work/main");
  int fd = open("/work/main", O_WRONLY | O_CREAT | O_TRUNC, 0755);
  int wrote = fd >= 0 && write(fd, "#!/bin/sh\necho pwned\n", 22) == 22;
  printf("genuine binary ran; replaced=%d cache_visible=%d\n", wrote,
         access(argv[1], F_OK) == 0);
  return 0;
}
)";
  const RunOptions options{.args = {temp_dir() + "/cache/artifacts"}};
  auto first = Run("c", evil, options);
  EXPECT_EQ(first.stdout_text, "genuine binary ran; replaced=1 cache_visible=0\n")
      << Describe(first);
  auto second = Run("c", evil, options);
  ASSERT_TRUE(second.compile.has_value()) << Describe(second);
  EXPECT_TRUE(second.compile->cached) << Describe(second);
  EXPECT_EQ(second.stdout_text, "genuine binary ran; replaced=1 cache_visible=0\n")
      << Describe(second);
}

TEST_F(IsolationTest, ConcurrentRunsDoNotSeeEachOther) {
  // Run 1 writes everything persist_write does and stays alive holding it; while it lives,
  // run 2 (started from run 1's output callback) must see none of it, nor run 1's processes.
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  UniqueFd cancel_r(fds[0]), cancel_w(fds[1]);
  std::string seen;
  std::optional<engine::ExecutionResult> second, procs;
  RunOptions options;
  options.args = {"persist_hold"};
  options.limits = {{"wall_time", "20s"}};
  options.cancel_fd = cancel_r.get();
  options.sink = [&](const engine::Event& e) {
    if (e.kind != engine::Event::Kind::kStdout || second) return;
    seen += e.data;
    if (seen.find("abstract bound=1\n") == std::string::npos) return;
    second = RunProgram("inspect.c", {.args = {"persist_check"}});
    procs = RunProgram("inspect.c", {.args = {"proc"}});
    ASSERT_EQ(::write(cancel_w.get(), "x", 1), 1);
  };
  auto first = RunProgram("inspect.c", options);
  EXPECT_EQ(first.status, Status::kCancelled) << Describe(first);
  ASSERT_TRUE(second.has_value()) << Describe(first);
  EXPECT_EQ(seen,
            "/tmp/polyrun-x written=1 exists=1\n"
            "/work/polyrun-x written=1 exists=1\n"
            "/dev/shm/polyrun-x written=1 exists=1\n"
            "shm created=1\n"
            "abstract bound=1\n");
  EXPECT_EQ(second->status, Status::kOk) << Describe(*second);
  EXPECT_EQ(second->stdout_text,
            "/tmp/polyrun-x exists=0\n"
            "/work/polyrun-x exists=0\n"
            "/dev/shm/polyrun-x exists=0\n"
            "shm exists=0\n"
            "abstract exists=0\n");
  ASSERT_TRUE(procs.has_value());
  EXPECT_EQ(ParsePairs(procs->stdout_text)["pids"], "1,2,") << Describe(*procs);
}

}  // namespace
}  // namespace polyrun::escape
