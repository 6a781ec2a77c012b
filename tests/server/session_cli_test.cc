// `polyrun session …` end to end: a real server (the fixture's, with sessions) and the real
// ./build/polyrun as a subprocess, so flags, output, exit codes and messages are what a user
// gets (docs/cli.md, "polyrun session").
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "http_client.h"
#include "server_fixture.h"
#include "util/digest.h"

namespace polyrun::testing {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

// A failure bound for one CLI call (the slowest is a session's first start).
constexpr auto kCliTimeout = 120s;

struct CliResult {
  int exit_code = -1;  // 128 + signal when killed
  std::string out, err;
};

// ./build/polyrun with `args` as a child: stdin from `stdin_data`, stdout/stderr collected.
// The environment is the test's without POLYRUN_SERVER/POLYRUN_API_KEY, plus `env`.
class Cli {
 public:
  explicit Cli(const std::vector<std::string>& args, const std::string& stdin_data = "",
               const std::vector<std::string>& env = {}) {
    int in[2], out[2], err[2];
    if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0 ||
        ::pipe2(err, O_CLOEXEC) != 0) {
      throw std::runtime_error("pipe2");
    }
    std::vector<std::string> env_strings;
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string_view kv(*e);
      if (kv.starts_with("POLYRUN_SERVER=") || kv.starts_with("POLYRUN_API_KEY=")) continue;
      env_strings.emplace_back(kv);
    }
    env_strings.insert(env_strings.end(), env.begin(), env.end());
    std::vector<std::string> argv_strings = {POLYRUN_BINARY};
    argv_strings.insert(argv_strings.end(), args.begin(), args.end());
    std::vector<char*> argv, envp;
    for (auto& s : argv_strings) argv.push_back(s.data());
    argv.push_back(nullptr);
    for (auto& s : env_strings) envp.push_back(s.data());
    envp.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork");
    if (pid_ == 0) {
      // Only async-signal-safe calls between fork and exec.
      ::dup2(in[0], 0);
      ::dup2(out[1], 1);
      ::dup2(err[1], 2);
      ::execve(argv[0], argv.data(), envp.data());
      ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    ::close(err[1]);
    out_fd_ = out[0];
    err_fd_ = err[0];
    // The CLI reads its stdin only for `-`; a pipe holds 64 KiB, more than any test writes.
    if (!stdin_data.empty() && ::write(in[1], stdin_data.data(), stdin_data.size()) !=
                                   static_cast<ssize_t>(stdin_data.size())) {
      ::close(in[1]);
      throw std::runtime_error("writing the CLI's stdin");
    }
    ::close(in[1]);
  }
  ~Cli() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (out_fd_ >= 0) ::close(out_fd_);
    if (err_fd_ >= 0) ::close(err_fd_);
  }
  Cli(const Cli&) = delete;
  Cli& operator=(const Cli&) = delete;

  pid_t pid() const { return pid_; }

  // Reads stdout and stderr to their end and reaps the child; kills it past kCliTimeout.
  CliResult Wait() {
    CliResult r;
    const auto deadline = std::chrono::steady_clock::now() + kCliTimeout;
    while (out_fd_ >= 0 || err_fd_ >= 0) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        ::kill(pid_, SIGKILL);
        ADD_FAILURE() << "polyrun did not finish within " << kCliTimeout.count() << " s";
        break;
      }
      pollfd fds[2] = {{out_fd_, POLLIN, 0}, {err_fd_, POLLIN, 0}};
      if (::poll(fds, 2, static_cast<int>(left.count())) < 0 && errno != EINTR) break;
      for (int i = 0; i < 2; ++i) {
        int& fd = i == 0 ? out_fd_ : err_fd_;
        if (fd < 0 || fds[i].revents == 0) continue;
        char buf[65536];
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n > 0) {
          (i == 0 ? r.out : r.err).append(buf, static_cast<size_t>(n));
        } else if (n == 0 || errno != EINTR) {
          ::close(fd);
          fd = -1;
        }
      }
    }
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return r;
  }

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
};

CliResult RunCli(const std::vector<std::string>& args, const std::string& stdin_data = "",
                 const std::vector<std::string>& env = {}) {
  return Cli(args, stdin_data, env).Wait();
}

std::string Describe(const CliResult& r) {
  return "exit " + std::to_string(r.exit_code) + "\nstdout: " + r.out + "\nstderr: " + r.err;
}

std::string Trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

class SessionCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = TestServer::Start();
    url_ = "http://127.0.0.1:" + std::to_string(server_->port());
  }

  // `polyrun session ARGS… --server URL`.
  CliResult Session(std::vector<std::string> args, const std::string& stdin_data = "") {
    args.insert(args.begin(), "session");
    args.insert(args.end(), {"--server", url_});
    return RunCli(args, stdin_data);
  }

  // A new python session's id; fails the test when creation fails.
  std::string CreatePython(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"create", "-l", "python"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto r = Session(args);
    EXPECT_EQ(r.exit_code, 0) << Describe(r);
    const std::string id = Trimmed(r.out);
    EXPECT_TRUE(id.starts_with("se_")) << Describe(r);
    return id;
  }

  json SessionObject(const std::string& id) {
    HttpClient c(server_->port());
    auto reply = c.Get("/v1/sessions/" + id);
    EXPECT_EQ(reply.status, 200u) << reply.body;
    return reply.Json();
  }

  std::unique_ptr<TestServer> server_;
  std::string url_;
};

TEST_F(SessionCliTest, StateCarriesAcrossExecsAndListShowsIt) {
  const std::string id = CreatePython({"--label", "user=ada"});

  auto set = Session({"exec", id, "-c", "x = 41"});
  EXPECT_EQ(set.exit_code, 0) << Describe(set);
  EXPECT_EQ(set.out, "");  // a statement has no value

  auto value = Session({"exec", id, "-c", "x + 1"});
  EXPECT_EQ(value.exit_code, 0) << Describe(value);
  EXPECT_EQ(value.out, "42\n");

  auto streams =
      Session({"exec", id, "-c", "import sys\nprint('out')\nprint('err', file=sys.stderr)\n'val'"});
  EXPECT_EQ(streams.exit_code, 0) << Describe(streams);
  EXPECT_EQ(streams.out, "out\n'val'\n");
  EXPECT_EQ(streams.err, "err\n");

  auto list = Session({"list"});
  ASSERT_EQ(list.exit_code, 0) << Describe(list);
  ASSERT_NE(list.out.find("ID"), std::string::npos) << list.out;
  const size_t row = list.out.find(id);
  ASSERT_NE(row, std::string::npos) << list.out;
  const std::string line = list.out.substr(row, list.out.find('\n', row) - row);
  EXPECT_NE(line.find("python"), std::string::npos) << line;
  EXPECT_NE(line.find("idle"), std::string::npos) << line;
  EXPECT_NE(line.find(" 3 "), std::string::npos) << line;  // three executions
  EXPECT_NE(line.find("ago"), std::string::npos) << line;

  auto list_json = Session({"list", "--json"});
  ASSERT_EQ(list_json.exit_code, 0) << Describe(list_json);
  const json sessions = json::parse(list_json.out).at("sessions");
  ASSERT_EQ(sessions.size(), 1u);
  EXPECT_EQ(sessions[0]["id"], id);
  EXPECT_EQ(sessions[0]["labels"]["user"], "ada");
  EXPECT_EQ(sessions[0]["executions"], 3);

  auto close = Session({"close", id, "--json"});
  ASSERT_EQ(close.exit_code, 0) << Describe(close);
  EXPECT_EQ(json::parse(close.out)["state"], "dead");

  // A closed session refuses work: the server's message, exit 2.
  auto after = Session({"exec", id, "-c", "x"});
  EXPECT_EQ(after.exit_code, 2) << Describe(after);
  EXPECT_NE(after.err.find("HTTP 4"), std::string::npos) << after.err;
}

TEST_F(SessionCliTest, ExitCodesFollowPolyrunRun) {
  const std::string id = CreatePython();

  auto raised = Session({"exec", id, "-c", "def f():\n    return 1/0\nf()"});
  EXPECT_EQ(raised.exit_code, 1) << Describe(raised);
  EXPECT_NE(raised.err.find("ZeroDivisionError: division by zero"), std::string::npos)
      << raised.err;
  EXPECT_NE(raised.err.find("in f"), std::string::npos) << raised.err;  // the traceback

  auto timeout = Session({"exec", id, "--wall-time", "500ms", "-c", "while True: pass"});
  EXPECT_EQ(timeout.exit_code, 124) << Describe(timeout);
  EXPECT_NE(timeout.err.find("timeout"), std::string::npos) << timeout.err;

  // --json: the result object, exit 0 whatever the code did.
  const std::string id2 = CreatePython();
  auto as_json = Session({"exec", id2, "--json", "--label", "cell=7", "-c", "1/0"});
  ASSERT_EQ(as_json.exit_code, 0) << Describe(as_json);
  const json r = json::parse(as_json.out);
  EXPECT_EQ(r["status"], "runtime_error");
  EXPECT_EQ(r["session_id"], id2);
  EXPECT_EQ(r["error"]["name"], "ZeroDivisionError");
  EXPECT_EQ(r["labels"]["cell"], "7");
  EXPECT_EQ(r["labels"]["session_id"], id2);

  auto bad_limit = Session({"exec", id2, "--wall-time", "soon", "-c", "1"});
  EXPECT_EQ(bad_limit.exit_code, 2) << Describe(bad_limit);
  EXPECT_NE(bad_limit.err.find("wall_time"), std::string::npos) << bad_limit.err;
}

TEST_F(SessionCliTest, CodeFromFilesStdinInputAndDisplays) {
  TempDir dir;
  const std::string helper = dir.path() + "/helper.py";
  std::ofstream(helper) << "def seven():\n    return 7\n";
  const std::string cell = dir.path() + "/cell.py";
  std::ofstream(cell) << "print('from a file')\nhelper.seven() * 6\n";

  // Files go into /work (under their base name); the language comes from the extension.
  auto created = Session({"create", helper, "--env", "GREETING=hello", "--json"});
  ASSERT_EQ(created.exit_code, 0) << Describe(created);
  const json session = json::parse(created.out);
  EXPECT_EQ(session["language"], "python");
  const std::string id = session["id"];

  auto imported = Session({"exec", id, "-c", "import os, helper\nos.environ['GREETING']"});
  EXPECT_EQ(imported.exit_code, 0) << Describe(imported);
  EXPECT_EQ(imported.out, "'hello'\n");

  auto from_file = Session({"exec", id, cell});
  EXPECT_EQ(from_file.exit_code, 0) << Describe(from_file);
  EXPECT_EQ(from_file.out, "from a file\n42\n");

  auto from_stdin = Session({"exec", id, "-"}, "helper.seven() + 1\n");
  EXPECT_EQ(from_stdin.exit_code, 0) << Describe(from_stdin);
  EXPECT_EQ(from_stdin.out, "8\n");

  auto input = Session({"exec", id, "--input", "Ada\nBabbage", "-c",
                        "first = input('First? ')\nlast = input()\nprint(first, last)"});
  EXPECT_EQ(input.exit_code, 0) << Describe(input);
  EXPECT_NE(input.out.find("Ada Babbage\n"), std::string::npos) << input.out;

  // No --input: the read sees end of file.
  auto no_input = Session({"exec", id, "-c", "input()"});
  EXPECT_EQ(no_input.exit_code, 1) << Describe(no_input);
  EXPECT_NE(no_input.err.find("EOFError"), std::string::npos) << no_input.err;

  // A rich display is one line naming its richest type and decoded size; a plain-text display
  // prints its text; the value of the last expression comes after them.
  auto shown = Session({"exec", id, "-c",
                        "display({'image/png': 'iVBORw0KGgo=', 'text/plain': '<img>'}, raw=True)\n"
                        "display('plain')\n"
                        "'done'"});
  EXPECT_EQ(shown.exit_code, 0) << Describe(shown);
  EXPECT_EQ(shown.out, "[display: image/png, 8 bytes]\n'plain'\n'done'\n");

  auto both = Session({"exec", id, "-c", "print(1)", cell});
  EXPECT_EQ(both.exit_code, 2) << Describe(both);
  auto none = Session({"exec", id});
  EXPECT_EQ(none.exit_code, 2) << Describe(none);
  EXPECT_NE(none.err.find("nothing to run"), std::string::npos) << none.err;
}

TEST_F(SessionCliTest, CtrlCInterruptsAndTheSessionKeepsItsState) {
  const std::string id = CreatePython();
  ASSERT_EQ(Session({"exec", id, "-c", "kept = 'yes'"}).exit_code, 0);

  Cli spin({"session", "exec", id, "--server", url_, "-c",
            "print('spinning', flush=True)\nwhile True: pass"});
  // Wait for the loop itself: the execution's own stdout event.
  HttpClient c(server_->port());
  std::string execution;
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (execution.empty()) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(spin.pid(), SIGKILL);
      FAIL() << "no execution in the session; the CLI: " << Describe(spin.Wait());
    }
    auto history = c.Get("/v1/executions?label.session_id=" + id + "&status=running");
    ASSERT_EQ(history.status, 200u) << history.body;
    const json items = history.Json()["items"];
    for (const auto& e : items) execution = e["id"].get<std::string>();
    if (execution.empty()) std::this_thread::sleep_for(20ms);  // polling the history
  }
  SseStream events(server_->port(), "/v1/executions/" + execution + "/events");
  events.Until("stdout");
  ASSERT_EQ(::kill(spin.pid(), SIGINT), 0);
  auto interrupted = spin.Wait();
  EXPECT_EQ(interrupted.exit_code, 130) << Describe(interrupted);
  EXPECT_EQ(interrupted.out, "spinning\n");
  EXPECT_NE(interrupted.err.find("cancelled"), std::string::npos) << interrupted.err;

  auto kept = Session({"exec", id, "-c", "kept"});
  EXPECT_EQ(kept.exit_code, 0) << Describe(kept);
  EXPECT_EQ(kept.out, "'yes'\n");
  EXPECT_EQ(SessionObject(id)["restarts"], 0);
}

TEST_F(SessionCliTest, InterruptRestartAndServerErrors) {
  const std::string id = CreatePython({"--label", "notebook=n1", "--exclusive", "notebook"});
  ASSERT_EQ(Session({"exec", id, "-c", "x = 1"}).exit_code, 0);

  // Idle: nothing to interrupt (409 session_idle).
  auto idle = Session({"interrupt", id});
  EXPECT_EQ(idle.exit_code, 2) << Describe(idle);
  EXPECT_NE(idle.err.find("HTTP 409"), std::string::npos) << idle.err;

  auto restart = Session({"restart", id, "--json"});
  ASSERT_EQ(restart.exit_code, 0) << Describe(restart);
  EXPECT_EQ(json::parse(restart.out)["restarts"], 1);
  auto gone = Session({"exec", id, "-c", "x"});
  EXPECT_EQ(gone.exit_code, 1) << Describe(gone);
  EXPECT_NE(gone.err.find("NameError"), std::string::npos) << gone.err;

  // The exclusive label is held: 409 session_conflict, the server's message.
  auto conflict =
      Session({"create", "-l", "python", "--label", "notebook=n1", "--exclusive", "notebook"});
  EXPECT_EQ(conflict.exit_code, 2) << Describe(conflict);
  EXPECT_NE(conflict.err.find("HTTP 409"), std::string::npos) << conflict.err;

  auto unknown = Session({"exec", "se_doesnotexist", "-c", "1"});
  EXPECT_EQ(unknown.exit_code, 2) << Describe(unknown);
  EXPECT_NE(unknown.err.find("HTTP 404"), std::string::npos) << unknown.err;

  auto no_language = Session({"create", "-l", "cobol-77"});
  EXPECT_EQ(no_language.exit_code, 2) << Describe(no_language);
  EXPECT_NE(no_language.err.find("language"), std::string::npos) << no_language.err;

  auto bad_duration = Session({"create", "-l", "python", "--lifetime", "forever"});
  EXPECT_EQ(bad_duration.exit_code, 2) << Describe(bad_duration);
  EXPECT_NE(bad_duration.err.find("--lifetime"), std::string::npos) << bad_duration.err;
}

TEST_F(SessionCliTest, ServerFromTheEnvironmentAndUnreachableServers) {
  // $POLYRUN_SERVER stands for --server.
  auto listed = RunCli({"session", "list"}, "", {"POLYRUN_SERVER=" + url_});
  EXPECT_EQ(listed.exit_code, 0) << Describe(listed);
  EXPECT_NE(listed.out.find("ID"), std::string::npos) << listed.out;

  // A port nobody listens on: bound, never listened, so connections are refused.
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const std::string dead = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  auto refused = RunCli({"session", "list", "--server", dead});
  ::close(fd);
  EXPECT_EQ(refused.exit_code, 69) << Describe(refused);
  EXPECT_NE(
      refused.err.find("cannot reach polyrun server at " + dead + " (is `polyrun serve` running?)"),
      std::string::npos)
      << refused.err;

  auto https = RunCli({"session", "list", "--server", "https://127.0.0.1:1"});
  EXPECT_EQ(https.exit_code, 2) << Describe(https);
  EXPECT_NE(https.err.find("https://"), std::string::npos) << https.err;
}

TEST(SessionCliKeysTest, ApiKeyFromFlagOrEnvironment) {
  const std::string secret = "session-cli-secret";
  auto options = LocalOptions();
  options.keys = server::ApiKeys({{"cli", Sha256().AddRaw(secret).HexDigest(), 0, 0}});
  auto srv = TestServer::Start(options);
  const std::string url = "http://127.0.0.1:" + std::to_string(srv->port());

  auto anonymous = RunCli({"session", "list", "--server", url});
  EXPECT_EQ(anonymous.exit_code, 2) << Describe(anonymous);
  EXPECT_NE(anonymous.err.find("HTTP 401"), std::string::npos) << anonymous.err;

  auto with_flag = RunCli({"session", "--server", url, "--api-key", secret, "list", "--json"});
  EXPECT_EQ(with_flag.exit_code, 0) << Describe(with_flag);
  EXPECT_EQ(json::parse(with_flag.out)["sessions"], json::array());

  auto with_env = RunCli({"session", "list", "--json"}, "",
                         {"POLYRUN_SERVER=" + url, "POLYRUN_API_KEY=" + secret});
  EXPECT_EQ(with_env.exit_code, 0) << Describe(with_env);
}

}  // namespace
}  // namespace polyrun::testing
