// `polyrun serve` killed with SIGKILL in the middle of runs, then restarted on the same data
// directory: no finished result is lost or changed, the runs in flight are reported as
// interrupted, and no sandboxed process outlives its server. And `polyrun serve` as a process
// on a PostgreSQL store, which it loads libpq for (labels: root, integration).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "http_client.h"
#include "server_fixture.h"
#include "store/test_postgres.h"

namespace polyrun::testing {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;

int PidfdOpen(pid_t pid) {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

// True once the process behind `pidfd` has exited (whoever its parent is), false at `timeout`.
bool WaitExit(int pidfd, milliseconds timeout) {
  pollfd p{pidfd, POLLIN, 0};
  for (;;) {
    const int n = ::poll(&p, 1, static_cast<int>(timeout.count()));
    if (n < 0 && errno == EINTR) continue;
    return n > 0;
  }
}

// A live process, pinned by a pidfd so that a reused pid can never be mistaken for it.
struct Process {
  pid_t pid = 0;
  std::string comm;
  int pidfd = -1;
};

// Every descendant of `root` now running (children of any of its threads, their children, …).
std::vector<Process> Descendants(pid_t root) {
  std::multimap<pid_t, std::pair<pid_t, std::string>> children;  // ppid -> (pid, comm)
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(entry.path() / "stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    // "pid (comm) state ppid …"; comm may hold spaces and parentheses.
    const size_t open = stat.find('('), close = stat.rfind(')');
    if (open == std::string::npos || close == std::string::npos) continue;
    std::istringstream rest(stat.substr(close + 2));
    char state = 0;
    pid_t ppid = 0;
    rest >> state >> ppid;
    children.emplace(ppid, std::pair{static_cast<pid_t>(std::stoi(name)),
                                     stat.substr(open + 1, close - open - 1)});
  }
  std::vector<Process> out;
  std::vector<pid_t> todo = {root};
  while (!todo.empty()) {
    const pid_t parent = todo.back();
    todo.pop_back();
    auto [begin, end] = children.equal_range(parent);
    for (auto it = begin; it != end; ++it) {
      const int fd = PidfdOpen(it->second.first);
      if (fd < 0) continue;  // gone meanwhile
      out.push_back({it->second.first, it->second.second, fd});
      todo.push_back(it->second.first);
    }
  }
  return out;
}

// Kills what is left of `procs`, waits for each to be gone, reaps those that became our
// children (ServeProcess makes us their subreaper) and closes the pidfds.
void KillAndForget(std::vector<Process>& procs) {
  for (auto& p : procs) {
    ::syscall(SYS_pidfd_send_signal, p.pidfd, SIGKILL, nullptr, 0);
    EXPECT_TRUE(WaitExit(p.pidfd, milliseconds(10000))) << p.pid << " " << p.comm;
    siginfo_t info{};
    ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(p.pidfd), &info, WEXITED | WNOHANG);
    ::close(p.pidfd);
  }
  procs.clear();
}

// The cgroups the sandbox made for the runs of server process `server` ("run-PID-N" under each
// hierarchy); a server that dies cannot remove them.
std::vector<std::filesystem::path> RunCgroups(pid_t server) {
  const std::string prefix = "run-" + std::to_string(server) + "-";
  std::vector<std::filesystem::path> found;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(
           "/sys/fs/cgroup", std::filesystem::directory_options::skip_permission_denied, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_directory(ec) || it->is_symlink(ec)) {
      it.disable_recursion_pending();
      continue;
    }
    if (it->path().filename().string().starts_with(prefix)) {
      found.push_back(it->path());
      it.disable_recursion_pending();
    } else if (it.depth() >= 5) {
      it.disable_recursion_pending();
    }
  }
  return found;
}

// The processes now in run cgroup `dir` of server `server`. Each is pinned by a pidfd and kept
// only if, once pinned, it is still in such a cgroup: a pid that ended and was reused meanwhile
// is never taken for one of ours.
std::vector<Process> ProcessesIn(const std::filesystem::path& dir, pid_t server) {
  const std::string marker = "/run-" + std::to_string(server) + "-";
  std::vector<Process> out;
  std::ifstream procs(dir / "cgroup.procs");
  for (pid_t pid = 0; procs >> pid;) {
    const int fd = PidfdOpen(pid);
    if (fd < 0) continue;  // gone meanwhile
    std::ifstream in("/proc/" + std::to_string(pid) + "/cgroup");
    const std::string cgroups((std::istreambuf_iterator<char>(in)),
                              std::istreambuf_iterator<char>());
    if (cgroups.find(marker) == std::string::npos) {
      ::close(fd);
      continue;
    }
    out.push_back({pid, "in " + dir.string(), fd});
  }
  return out;
}

// The processes now in any run cgroup of server `server`: those its sandboxes started after
// any look at its descendants too (a pool's refill, the moment it was killed).
std::vector<Process> RunCgroupProcesses(pid_t server) {
  std::vector<Process> out;
  for (const auto& dir : RunCgroups(server)) {
    for (Process& p : ProcessesIn(dir, server)) {
      if (std::ranges::any_of(out, [&](const Process& q) { return q.pid == p.pid; })) {
        ::close(p.pidfd);  // the same process in another hierarchy (v1)
      } else {
        out.push_back(p);
      }
    }
  }
  return out;
}

// Ends whatever is left in the run cgroups of dead server `server` and removes the cgroups.
// A process killed leaves its cgroup only once the kernel has finished its exit (rmdir says
// EBUSY until then), and one may fork between the listing and the kill: look again until the
// cgroup is empty. ENOENT: another polyrun swept the dead server's cgroups first.
void RemoveRunCgroups(pid_t server) {
  for (const auto& dir : RunCgroups(server)) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (;;) {
      std::vector<Process> left = ProcessesIn(dir, server);
      KillAndForget(left);
      if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) break;
      if (errno != EBUSY || std::chrono::steady_clock::now() > deadline) {
        ADD_FAILURE() << "rmdir " << dir << ": " << strerror(errno);
        break;
      }
    }
  }
}

// ./build/polyrun serve on 127.0.0.1, a free port and `data_dir`, as a child process (no
// shell): stdout is a pipe read for the "listening" line, stderr goes to a file.
class ServeProcess {
 public:
  // `extra` follows the serve flags (`--store URI`, say).
  explicit ServeProcess(const std::string& data_dir, const std::vector<std::string>& extra = {})
      : log_path_(data_dir + "/serve.log") {
    // The sandboxes of a killed server are orphaned: they become our children, for us to reap,
    // rather than zombies of whatever init this test runs under.
    ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    // An empty config file: the host's /etc/polyrun/polyrun.toml must not change the test.
    const std::string config = data_dir + "/polyrun.toml";
    std::ofstream(config).flush();
    std::vector<std::string> args = {POLYRUN_BINARY, "--config",    config,   "serve",
                                     "--listen",     "127.0.0.1:0", "--data", data_dir};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    argv.reserve(args.size() + 1);
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe2");
    const int log = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    const int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (log < 0 || null < 0) throw std::runtime_error("open " + log_path_);
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork");
    if (pid_ == 0) {
      // Only async-signal-safe calls between fork and exec.
      if (::dup2(null, 0) < 0 || ::dup2(out[1], 1) < 0 || ::dup2(log, 2) < 0) ::_exit(126);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(out[1]);
    ::close(log);
    ::close(null);
    out_ = out[0];
    pidfd_ = PidfdOpen(pid_);
    if (pidfd_ < 0) throw std::runtime_error("pidfd_open");

    // The first line says where it listens; it comes once the store and engine are up.
    std::string line;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (line.find('\n') == std::string::npos) {
      const auto left =
          std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
      pollfd p[2] = {{out_, POLLIN, 0}, {pidfd_, POLLIN, 0}};
      if (left.count() <= 0 || ::poll(p, 2, static_cast<int>(left.count())) <= 0) {
        throw std::runtime_error("polyrun serve did not say where it listens; log: " + log_text());
      }
      char buf[512];
      const ssize_t n = ::read(out_, buf, sizeof buf);
      if (n <= 0) throw std::runtime_error("polyrun serve exited at start; log: " + log_text());
      line.append(buf, static_cast<size_t>(n));
    }
    const std::string marker = "listening on http://127.0.0.1:";
    const size_t at = line.find(marker);
    if (at == std::string::npos) throw std::runtime_error("unexpected first line: " + line);
    port_ = static_cast<uint16_t>(std::stoi(line.substr(at + marker.size())));
  }

  ~ServeProcess() {
    if (pid_ > 0) Kill();
    if (out_ >= 0) ::close(out_);
    if (pidfd_ >= 0) ::close(pidfd_);
  }
  ServeProcess(const ServeProcess&) = delete;
  ServeProcess& operator=(const ServeProcess&) = delete;

  pid_t pid() const { return pid_; }
  uint16_t port() const { return port_; }
  std::string log_text() const {
    std::ifstream in(log_path_);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }

  // SIGKILL, then reap.
  void Kill() {
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  // Sends `sig` and reaps the process if it exits within `timeout`: its wait status, or
  // nullopt when it is still running.
  std::optional<int> Signal(int sig, milliseconds timeout) {
    ::kill(pid_, sig);
    if (!WaitExit(pidfd_, timeout)) return std::nullopt;
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }

 private:
  std::string log_path_;
  pid_t pid_ = -1;
  int out_ = -1;
  int pidfd_ = -1;
  uint16_t port_ = 0;
};

// Starts `n` runs that sleep for 30 s and returns their ids once each is running its program
// (its first line of output has arrived: the sandbox and the interpreter exist).
std::vector<std::string> StartSleepers(HttpClient& c, uint16_t port, int n) {
  const json body = {{"language", "python"},
                     {"code", "import time\nprint('ready', flush=True)\ntime.sleep(30)\n"},
                     {"limits", {{"wall_time", "60s"}}}};
  std::vector<std::string> ids;
  for (int i = 0; i < n; ++i) {
    auto r = c.Post("/v1/executions?wait=false", body);
    if (r.status != 202) throw std::runtime_error("start a sleeper: " + r.body);
    ids.push_back(r.Json()["id"]);
  }
  for (const auto& id : ids) {
    SseStream s(port, "/v1/executions/" + id + "/events");
    s.Until("started");
    std::string out;
    while (out != "ready\n") out += s.Until("stdout").Json()["data"].get<std::string>();
  }
  return ids;
}

TEST(CrashTest, SandboxedRunsDieWithTheirServer) {
  TempDir data;
  ServeProcess serve(data.path());
  HttpClient c(serve.port());
  StartSleepers(c, serve.port(), 2);
  std::vector<Process> procs = Descendants(serve.pid());
  int inits = 0;
  for (const auto& p : procs) inits += p.comm == "polyrun-init";
  // One per run, and the warm pools' waiting sandboxes besides: they must die too.
  EXPECT_GE(inits, 2) << "one sandbox init per run";
  EXPECT_GE(procs.size(), 4u) << "each init runs the program";

  const pid_t server_pid = serve.pid();
  serve.Kill();
  // And whatever its sandboxes held when it died, the snapshot above notwithstanding: a pool
  // may have started a sandbox since.
  for (Process& p : RunCgroupProcesses(server_pid)) {
    if (std::ranges::any_of(procs, [&](const Process& q) { return q.pid == p.pid; })) {
      ::close(p.pidfd);
    } else {
      procs.push_back(p);
    }
  }
  std::string survivors;
  for (const auto& p : procs) {
    if (!WaitExit(p.pidfd, milliseconds(10000))) {
      survivors += " " + std::to_string(p.pid) + " (" + p.comm + ")";
    }
  }
  EXPECT_TRUE(survivors.empty())
      << "still running 10 s after their server was killed:" << survivors
      << ". Nothing enforces their limits any more (the wall-time clock was the server's).";
  KillAndForget(procs);
  RemoveRunCgroups(server_pid);
}

TEST(CrashTest, RestartKeepsFinishedResultsAndReportsInterruptedRuns) {
  TempDir data;
  std::map<std::string, std::string> finished;  // id -> its GET body before the crash
  std::vector<std::string> interrupted;
  {
    ServeProcess serve(data.path());
    HttpClient c(serve.port());
    const std::vector<json> programs = {
        {{"language", "python"}, {"code", "print('héllo')"}, {"labels", {{"artifact_id", "x"}}}},
        {{"language", "python"}, {"code", "x = 1\n1 / 0\n"}},
        {{"language", "c"}, {"code", "int main(void) { return y; }\n"}},
        {{"language", "bash"}, {"code", "echo out; echo err >&2; exit 3"}},
    };
    for (const auto& program : programs) {
      auto r = c.Post("/v1/executions", program);
      ASSERT_EQ(r.status, 200u) << r.body;
      const std::string id = r.Json()["id"];
      auto g = c.Get("/v1/executions/" + id);
      ASSERT_EQ(g.status, 200u) << g.body;
      finished[id] = g.body;
    }
    interrupted = StartSleepers(c, serve.port(), 2);
    std::vector<Process> procs = Descendants(serve.pid());
    const pid_t server_pid = serve.pid();
    serve.Kill();
    // Whether the sandboxes die with their server is the test above's business; whatever is
    // left is cleaned up here so that nothing outlives this test.
    KillAndForget(procs);
    RemoveRunCgroups(server_pid);
  }

  ServeProcess again(data.path());
  EXPECT_NE(again.log_text().find("2 execution(s) were in flight"), std::string::npos)
      << again.log_text();
  HttpClient c(again.port());
  for (const auto& [id, body] : finished) {
    auto g = c.Get("/v1/executions/" + id);
    EXPECT_EQ(g.status, 200u);
    EXPECT_EQ(g.body, body) << "the stored result of " << id << " changed across the crash";
  }
  for (const auto& id : interrupted) {
    SCOPED_TRACE(id);
    auto g = c.Get("/v1/executions/" + id);
    ASSERT_EQ(g.status, 200u) << g.body;
    json result = g.Json();
    EXPECT_EQ(result["status"], "internal_error");
    EXPECT_EQ(result["reason"], "interrupted by server restart");
    EXPECT_EQ(result["stdout"], "ready\n") << "output recorded before the crash is kept";
    EXPECT_FALSE(result["finished_at"].is_null());

    std::vector<SseEvent> events = SseStream(again.port(), "/v1/executions/" + id + "/events")
                                       .ReadToEnd();  // ends: the run is finished now
    ASSERT_GE(events.size(), 4u);
    EXPECT_EQ(events.front().event, "queued");
    EXPECT_EQ(events[1].event, "started");
    for (size_t i = 0; i < events.size(); ++i) EXPECT_EQ(events[i].id, std::to_string(i + 1));
    ASSERT_EQ(events.back().event, "finished");
    json payload = events.back().Json()["payload"];
    EXPECT_EQ(payload["status"], "internal_error");
    EXPECT_EQ(payload["reason"], "interrupted by server restart");
  }
  auto history = c.Get("/v1/executions?status=internal_error");
  ASSERT_EQ(history.status, 200u);
  std::set<std::string> reported;
  const json items = history.Json()["items"];
  for (const auto& item : items) reported.insert(item["id"]);
  EXPECT_EQ(reported, std::set<std::string>(interrupted.begin(), interrupted.end()));

  // SIGTERM: a graceful stop within the shutdown grace (10 s by default; nothing is running).
  auto status = again.Signal(SIGTERM, milliseconds(10000));
  ASSERT_TRUE(status.has_value()) << "polyrun serve did not stop on SIGTERM";
  EXPECT_TRUE(WIFEXITED(*status)) << *status;
  EXPECT_EQ(WEXITSTATUS(*status), 0) << again.log_text();
}

// Whether the process `pid` has a library whose file name starts with `name` mapped.
bool Maps(pid_t pid, const std::string& name) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/maps");
  std::string line;
  while (std::getline(in, line)) {
    const size_t slash = line.rfind('/');
    if (slash != std::string::npos && line.compare(slash + 1, name.size(), name) == 0) return true;
  }
  return false;
}

// polyrun does not link libpq (src/store/libpq.h): the binary itself, on a PostgreSQL store,
// loads it and keeps the event log there; on SQLite it never maps it.
TEST(ServeProcessTest, APostgresqlStoreLoadsLibpqWhichOtherwiseStaysUnmapped) {
  auto postgres = store::pgtest::SharedTestPostgres();
  ASSERT_TRUE(postgres.has_value()) << postgres.error().message();
  auto uri = (*postgres)->CreateDatabase();
  ASSERT_TRUE(uri.has_value()) << uri.error().message();

  TempDir sqlite_data;
  {
    ServeProcess sqlite(sqlite_data.path());
    EXPECT_FALSE(Maps(sqlite.pid(), "libpq.so")) << "a server on SQLite mapped libpq";
    auto status = sqlite.Signal(SIGTERM, milliseconds(10000));
    ASSERT_TRUE(status.has_value()) << "polyrun serve did not stop on SIGTERM";
  }

  TempDir data;
  ServeProcess serve(data.path(), {"--store", *uri});
  EXPECT_TRUE(Maps(serve.pid(), "libpq.so")) << "a server on PostgreSQL without libpq mapped";
  HttpClient c(serve.port());
  auto r = c.Post("/v1/executions?wait=true", {{"language", "python"}, {"code", "print(6 * 7)"}});
  ASSERT_EQ(r.status, 200u) << r.body;
  const std::string id = r.Json()["id"];
  EXPECT_EQ(r.Json()["stdout"], "42\n") << r.body;
  auto stored = store::pgtest::ExecuteSql(
      *uri,
      "SELECT status || ' ' || (finished_at IS NOT NULL) FROM executions WHERE id = '" + id + "'");
  ASSERT_TRUE(stored.has_value()) << stored.error().message();
  EXPECT_EQ(*stored, "ok true") << "the run is not in PostgreSQL's event log";

  auto status = serve.Signal(SIGTERM, milliseconds(10000));
  ASSERT_TRUE(status.has_value()) << "polyrun serve did not stop on SIGTERM";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << serve.log_text();
}

}  // namespace
}  // namespace polyrun::testing
