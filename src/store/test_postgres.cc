#include "store/test_postgres.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "util/files.h"
#include "util/strings.h"

namespace polyrun::store::pgtest {

namespace {

namespace fs = std::filesystem;

constexpr const char* kUser = "postgres";
constexpr const char* kSetupHint = "run `make setup` (it installs the postgresql package)";

// argv as exec wants it; the strings must outlive the returned pointers.
std::vector<char*> CArgv(const std::vector<std::string>& argv) {
  std::vector<char*> out;
  out.reserve(argv.size() + 1);
  for (const auto& a : argv) out.push_back(const_cast<char*>(a.c_str()));
  out.push_back(nullptr);
  return out;
}

// "15" → {15}; "9.6" → {9, 6}; anything else sorts first.
std::vector<int> VersionOf(const std::string& name) {
  std::vector<int> out;
  for (const auto& part : Split(name, '.')) {
    int n = 0;
    auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), n);
    if (ec != std::errc() || end != part.data() + part.size()) return {};
    out.push_back(n);
  }
  return out;
}

// The bin directory of the highest PostgreSQL version that has initdb and pg_ctl.
Result<std::string> FindBinDir() {
  std::optional<std::pair<std::vector<int>, std::string>> best;
  std::error_code ec;
  for (fs::directory_iterator it("/usr/lib/postgresql", ec), end; !ec && it != end;
       it.increment(ec)) {
    const fs::path bin = it->path() / "bin";
    if (::access((bin / "initdb").c_str(), X_OK) != 0 ||
        ::access((bin / "pg_ctl").c_str(), X_OK) != 0) {
      continue;
    }
    auto version = VersionOf(it->path().filename().string());
    if (!best || version > best->first) best.emplace(std::move(version), bin.string());
  }
  if (!best) {
    return Fail(Errc::kNotFound,
                "PostgreSQL's server binaries (initdb, pg_ctl) are not under "
                "/usr/lib/postgresql/*/bin: " +
                    std::string(kSetupHint));
  }
  return best->second;
}

std::string RunuserPath() {
  for (const char* p : {"/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"}) {
    if (::access(p, X_OK) == 0) return p;
  }
  return "/usr/sbin/runuser";
}

std::string Tail(const std::string& path, size_t max = 2000) {
  auto text = ReadTrustedFile(path);
  if (!text) return "(no log)";
  return text->size() > max ? "…" + text->substr(text->size() - max) : *text;
}

int WaitFor(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return status;
}

}  // namespace

Result<std::unique_ptr<TestPostgres>> TestPostgres::Start() {
  auto bin = FindBinDir();
  if (!bin) return std::unexpected(bin.error());
  std::unique_ptr<TestPostgres> server(new TestPostgres());
  server->bin_ = *bin;
  server->port_ = 55432 + static_cast<int>(::getpid() % 1000);
  server->as_postgres_ = ::geteuid() == 0;
  if (auto r = server->Launch(); !r) return std::unexpected(r.error());  // ~ cleans up
  return server;
}

Result<void> TestPostgres::Launch() {
  std::string tmpl = "/tmp/polyrun-pg-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) return SysFail("mkdtemp", "test postgres");
  dir_ = tmpl;
  if (as_postgres_) {
    const passwd* pw = ::getpwnam(kUser);
    if (pw == nullptr) {
      return Fail(Errc::kNotFound, "test postgres: no user `postgres`: " + std::string(kSetupHint));
    }
    if (::chown(dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
      return SysFail("chown", "test postgres: " + dir_);
    }
  }
  const std::string data = dir_ + "/data";
  const std::string port = std::to_string(port_);

  // Every command as the server's user, without a shell; its output goes to commands.log.
  auto command = [&](std::vector<std::string> argv) {
    if (as_postgres_) argv.insert(argv.begin(), {RunuserPath(), "-u", kUser, "--"});
    return argv;
  };
  const std::vector<std::string> stop =
      command({bin_ + "/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"});

  // The watchdog, before anything that could leave a server behind.
  {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return SysFail("pipe2", "test postgres watchdog");
    UniqueFd read_end(fds[0]);
    watchdog_fd_.reset(fds[1]);
    UniqueFd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
    const std::vector<std::string> rm = {"/bin/rm", "-rf", "--", dir_};
    auto stop_argv = CArgv(stop);
    auto rm_argv = CArgv(rm);
    watchdog_ = ::fork();
    if (watchdog_ < 0) return SysFail("fork", "test postgres watchdog");
    if (watchdog_ == 0) {
      // Only async-signal-safe calls from here: the parent may have had other threads.
      // Its own session, deaf to the terminal's and ctest's signals to our process group,
      // so that it outlives us exactly when it is needed.
      ::setsid();
      for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE}) ::signal(sig, SIG_IGN);
      ::dup2(null.get(), 0);
      ::dup2(null.get(), 1);
      ::dup2(null.get(), 2);
      ::dup2(read_end.get(), 3);
      ::close_range(4, ~0U, 0);
      char byte = 0;
      ssize_t n = 0;
      // The analyzer sees SharedTestPostgres's lock held here: only a copy came along with
      // fork, and this process never touches it.
      do {
        // NOLINTNEXTLINE(clang-analyzer-unix.BlockInCriticalSection)
        n = ::read(3, &byte, 1);
      } while (n < 0 && errno == EINTR);
      if (n == 1) ::_exit(0);  // the owner cleaned up itself
      const pid_t pid = ::fork();
      if (pid == 0) {
        ::execv(stop_argv[0], stop_argv.data());
        ::_exit(127);
      }
      if (pid > 0) {
        int status = 0;
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
      }
      ::execv(rm_argv[0], rm_argv.data());
      ::_exit(127);
    }
  }

  const std::string log = dir_ + "/commands.log";
  auto run = [&](const std::vector<std::string>& argv) -> Result<void> {
    UniqueFd out(::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
    UniqueFd in(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!out.valid() || !in.valid()) return SysFail("open", "test postgres: " + log);
    auto cargv = CArgv(argv);
    const pid_t pid = ::fork();
    if (pid < 0) return SysFail("fork", "test postgres: " + argv.back());
    if (pid == 0) {
      ::dup2(in.get(), 0);
      ::dup2(out.get(), 1);
      ::dup2(out.get(), 2);
      // The server's user may not enter our working directory (/root, say).
      if (::chdir(dir_.c_str()) != 0) ::_exit(126);
      ::execv(cargv[0], cargv.data());
      ::_exit(127);
    }
    const int status = WaitFor(pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      std::string args;
      for (const auto& a : argv) args += (args.empty() ? "" : " ") + a;
      return Fail(Errc::kInternal, "test postgres: `" + args + "` failed (wait status " +
                                       std::to_string(status) + "): " + Tail(log));
    }
    return {};
  };

  // trust: only the socket in dir_ (mode 0700 as mkdtemp made it) reaches the server.
  // UTF8 without a locale: the same byte-wise ordering the store asks for with COLLATE "C".
  // No fsync (-N, -F): the data dies with the run.
  if (auto r = run(command({bin_ + "/initdb", "-A", "trust", "-U", "polyrun", "-E", "UTF8",
                            "--no-locale", "-N", "-D", data}));
      !r) {
    return r;
  }
  if (auto r = run(command({bin_ + "/pg_ctl", "-D", data, "-w", "-t", "60", "-o",
                            "-k " + dir_ + " -c listen_addresses='' -p " + port + " -F", "-l",
                            dir_ + "/log", "start"}));
      !r) {
    return r;
  }
  return {};
}

void TestPostgres::Stop() {
  if (!dir_.empty()) {
    // A server runs (or a failed start left one) while its pid file exists.
    pid_t postmaster = -1;
    if (auto pid_file = ReadTrustedFile(dir_ + "/data/postmaster.pid"); pid_file) {
      auto lines = Split(*pid_file, '\n');
      int pid = 0;
      if (!lines.empty()) std::from_chars(lines[0].data(), lines[0].data() + lines[0].size(), pid);
      postmaster = pid;
    }
    if (postmaster > 0) {
      std::vector<std::string> argv = {bin_ + "/pg_ctl", "-D", dir_ + "/data", "-m",
                                       "immediate",      "-w", "stop"};
      if (as_postgres_) argv.insert(argv.begin(), {RunuserPath(), "-u", kUser, "--"});
      auto cargv = CArgv(argv);
      UniqueFd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
      const pid_t pid = ::fork();
      if (pid == 0) {
        ::dup2(null.get(), 1);
        ::dup2(null.get(), 2);
        if (::chdir(dir_.c_str()) != 0) ::_exit(126);
        ::execv(cargv[0], cargv.data());
        ::_exit(127);
      }
      const bool stopped = pid > 0 && WaitFor(pid) == 0;
      // pg_ctl failed or timed out: the postmaster is ours (we started it, it wrote its pid),
      // so end it by pid. SIGQUIT is PostgreSQL's immediate shutdown; its backends follow.
      for (int i = 0; !stopped && i < 100 && ::kill(postmaster, 0) == 0; ++i) {
        if (i == 0) ::kill(postmaster, SIGQUIT);
        if (i == 50) ::kill(postmaster, SIGKILL);
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
    std::error_code ec;
    fs::remove_all(dir_, ec);
    dir_.clear();
  }
  if (watchdog_fd_.valid()) {
    const char done = 'x';
    (void)WriteAll(watchdog_fd_.get(), &done, 1);
    watchdog_fd_.reset();
  }
  if (watchdog_ > 0) {
    WaitFor(watchdog_);
    watchdog_ = -1;
  }
}

TestPostgres::~TestPostgres() {
  Stop();
}

std::string TestPostgres::Uri(const std::string& database) const {
  return "postgresql://polyrun@/" + database + "?host=" + dir_ + "&port=" + std::to_string(port_);
}

Result<std::string> TestPostgres::CreateDatabase() {
  const std::string name = "t_" + std::to_string(++databases_);
  // An identifier cannot be a parameter; this one is ours, not input.
  if (auto r = ExecuteSql(Uri("postgres"), "CREATE DATABASE " + name); !r) {
    return std::unexpected(r.error());
  }
  return Uri(name);
}

Result<std::string> ExecuteSql(const std::string& uri, const std::string& sql) {
  PGconn* conn = PQconnectdb(uri.c_str());
  if (conn == nullptr || PQstatus(conn) != CONNECTION_OK) {
    std::string message = conn != nullptr ? PQerrorMessage(conn) : "out of memory";
    PQfinish(conn);
    return Fail(Errc::kSyscall, "test postgres: connect " + uri + ": " + message);
  }
  PQsetNoticeProcessor(
      conn, [](void*, const char*) {}, nullptr);
  PGresult* r = PQexec(conn, sql.c_str());
  const ExecStatusType status = PQresultStatus(r);
  Result<std::string> out;
  if (status == PGRES_TUPLES_OK) {
    out = PQntuples(r) > 0 && PQnfields(r) > 0 ? std::string(PQgetvalue(r, 0, 0)) : "";
  } else if (status != PGRES_COMMAND_OK) {
    out = Fail(Errc::kInternal, "test postgres: " + sql + ": " + PQerrorMessage(conn));
  }
  PQclear(r);
  PQfinish(conn);
  return out;
}

namespace {

struct Shared {
  std::mutex mu;
  std::unique_ptr<TestPostgres> server;
  std::optional<Error> error;
};

Shared& SharedState() {
  static Shared shared;
  return shared;
}

class StopServer : public ::testing::Environment {
 public:
  void TearDown() override {
    std::lock_guard lock(SharedState().mu);
    SharedState().server.reset();
    SharedState().error.reset();
  }
};

// GoogleTest owns and runs it; registered before main runs any test.
[[maybe_unused]] ::testing::Environment* const kStopServer =
    ::testing::AddGlobalTestEnvironment(new StopServer);

}  // namespace

Result<TestPostgres*> SharedTestPostgres() {
  Shared& shared = SharedState();
  std::lock_guard lock(shared.mu);
  if (shared.server) return shared.server.get();
  if (shared.error) return std::unexpected(*shared.error);
  auto server = TestPostgres::Start();
  if (!server) {
    shared.error = server.error();
    return std::unexpected(server.error());
  }
  shared.server = std::move(*server);
  return shared.server.get();
}

}  // namespace polyrun::store::pgtest
