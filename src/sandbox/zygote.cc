#include "sandbox/zygote.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <string>
#include <vector>

#include "sandbox/child_plan.h"
#include "sandbox/started_tree.h"
#include "util/files.h"

namespace polyrun::sandbox {

namespace {

using Clock = std::chrono::steady_clock;

// Where a fork server finds polyrun-zygote-factory (zygote_factory.cc) in its sandbox.
constexpr const char* kZygoteFactoryPath = "/polyrun/zygote-factory";
// Each run's init stays in the server's cgroup (docs/performance.md, "Zygotes"): its process
// limit makes room for this many runs in flight (forked ahead, running, being torn down) besides
// the server's own processes. Past it, a run's namespaces cannot be made: it ends as a setup
// failure.
constexpr uint64_t kRunsInFlight = 512;

// Polls `fd` for input until `deadline`, giving up early when `server_pidfd` (the zygote's
// init) ends. Returns 1 when readable, 0 on timeout, -1 when the server ended.
int WaitReadable(int fd, int server_pidfd, Clock::time_point deadline) {
  for (;;) {
    pollfd p[2] = {{fd, POLLIN, 0}, {server_pidfd, POLLIN, 0}};
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    const int ready = ::poll(p, 2, static_cast<int>(std::max<int64_t>(0, left.count())));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return 0;
    if (p[0].revents != 0) return 1;
    return -1;
  }
}

// One message on a SOCK_SEQPACKET socket with the descriptors it carries (at most `max_fds`).
struct Message {
  std::string bytes;
  std::vector<UniqueFd> fds;
};

Result<Message> Receive(int fd, size_t max_bytes, size_t max_fds) {
  Message m;
  m.bytes.resize(max_bytes);
  iovec iov{m.bytes.data(), max_bytes};
  std::vector<char> control(CMSG_SPACE(sizeof(int) * max_fds));
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  ssize_t n;
  do {
    n = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return SysFail("recvmsg", "zygote");
  m.bytes.resize(static_cast<size_t>(n));
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int got = -1;
      std::memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof got);
      m.fds.emplace_back(got);
    }
  }
  return m;
}

Result<void> SendWithFds(int fd, std::string_view bytes, const std::vector<int>& fds) {
  iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
  std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (!fds.empty()) {
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t n;
  do {
    n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return SysFail("sendmsg", "zygote control socket");
  return {};
}

// What the server's stderr holds (non-blocking, bounded): the operator's best clue.
std::string Said(int err_fd) {
  std::string said;
  ::fcntl(err_fd, F_SETFL, ::fcntl(err_fd, F_GETFL) | O_NONBLOCK);
  char buf[2048];
  const ssize_t n = ::read(err_fd, buf, sizeof buf);
  if (n > 0) said.assign(buf, static_cast<size_t>(n));
  return said;
}

// A run's stdio pipes and status socket: the ends the run gets and the ends the host keeps.
struct RunChannels {
  Pipe in, out, err;
  UniqueFd status_host, status_run;
  std::vector<int> RunEnds() const {
    return {in.read.get(), out.write.get(), err.write.get(), status_run.get()};
  }
  void CloseRunEnds() {
    in.read.reset();
    out.write.reset();
    err.write.reset();
    status_run.reset();
  }
};

Result<RunChannels> MakeRunChannels(uid_t uid, gid_t gid) {
  RunChannels c;
  for (Pipe* p : {&c.in, &c.out, &c.err}) {
    auto made = MakePipe();
    if (!made) return std::unexpected(made.error());
    // As in Prepare: the program's own streams belong to the sandbox user.
    if (::fchown(made->read.get(), uid, gid) != 0 && errno != EPERM) {
      return SysFail("fchown", "sandbox stdio pipe");
    }
    *p = std::move(*made);
  }
  int st[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, st) != 0) {
    return SysFail("socketpair", "zygote run status");
  }
  c.status_host = UniqueFd(st[0]);
  c.status_run = UniqueFd(st[1]);
  return c;
}

// The run's rlimits as zygote.py reads them: "rlimits": [[resource, soft, hard], ...].
std::string RlimitsJson(const SandboxLimits& lim) {
  auto rl = [](int resource, uint64_t soft, uint64_t hard) {
    return "[" + std::to_string(resource) + "," + std::to_string(soft) + "," +
           std::to_string(hard) + "]";
  };
  const auto cpu_s = static_cast<uint64_t>((lim.cpu_time.count() + 999) / 1000);
  return "\"rlimits\":[" + rl(RLIMIT_CORE, 0, 0) + "," +
         rl(RLIMIT_FSIZE, lim.file_size_bytes, lim.file_size_bytes) + "," +
         rl(RLIMIT_NOFILE, lim.open_files, lim.open_files) + "," +
         rl(RLIMIT_STACK, lim.stack_bytes, lim.stack_bytes) + "," +
         rl(RLIMIT_CPU, cpu_s + 1, cpu_s + 2) + "]";
}

// What a run's init answers on its status socket: its pidfd, or why the run could not start.
struct InitAnswer {
  UniqueFd pid_fd;
  std::string failed;  // set when the init reported a setup failure instead
};

Result<InitAnswer> AwaitInit(int status, int server_pidfd, Clock::time_point by) {
  const int waited = WaitReadable(status, server_pidfd, by);
  if (waited == 0) return Fail(Errc::kUnavailable, "zygote: no answer in time");
  if (waited < 0) return Fail(Errc::kUnavailable, "zygote: ended");
  auto answer = Receive(status, sizeof(InitReport), 1);
  if (!answer) return std::unexpected(answer.error());
  if (answer->bytes == "P" && answer->fds.size() == 1) {
    return InitAnswer{std::move(answer->fds[0]), {}};
  }
  InitReport report;
  if (answer->bytes.size() != sizeof report) {
    return Fail(Errc::kUnavailable, "zygote: the run ended before it started");
  }
  std::memcpy(&report, answer->bytes.data(), sizeof report);
  return InitAnswer{UniqueFd(),
                    std::string(report.what, strnlen(report.what, sizeof report.what)) +
                        (report.err != 0 ? ": " + std::string(std::strerror(report.err)) : "")};
}

// The supervised tree of a forked run whose init is up.
std::unique_ptr<StartedTree> ForkedTree(UniqueFd pid_fd, std::unique_ptr<Cgroup> cgroup,
                                        UniqueFd stdin_w, UniqueFd out_r, UniqueFd err_r,
                                        UniqueFd status, Clock::time_point start) {
  auto tree = std::make_unique<StartedTree>();
  tree->pid_fd = std::move(pid_fd);
  tree->cgroup = std::move(cgroup);
  tree->stdin_w = std::move(stdin_w);
  tree->out_r = std::move(out_r);
  tree->err_r = std::move(err_r);
  tree->st_r = std::move(status);
  tree->start = start;
  tree->status_cap = sizeof(InitReport);
  return tree;
}

}  // namespace

Zygote::Zygote(PreparedSandbox tree, UniqueFd control, SandboxLimits limits)
    : tree_(std::move(tree)), control_(std::move(control)), limits_(limits) {}

Zygote::~Zygote() = default;  // the tree's destructor kills the server's whole PID namespace

bool Zygote::CanServe(const SandboxLimits& run) const {
  return run.file_size_bytes <= limits_.file_size_bytes && run.open_files <= limits_.open_files &&
         run.stack_bytes <= limits_.stack_bytes;
}

void Zygote::Drop(uint64_t id, int pid_fd) {
  // Its init waits until it is killed; the server forgets the descriptors it keeps for it.
  if (pid_fd >= 0) ::syscall(SYS_pidfd_send_signal, pid_fd, SIGKILL, nullptr, 0);
  std::lock_guard lock(send_mu_);
  // A server that cannot hear it is gone, with everything it kept: nothing left to undo.
  [[maybe_unused]] auto sent =
      SendWithFds(control_.get(), "{\"drop\":" + std::to_string(id) + "}", {});
}

bool Zygote::Alive() const {
  return tree_.Healthy();
}

uint64_t Zygote::MemoryPeakBytes() const {
  return tree_.MemoryPeakBytes();
}

size_t Zygote::ahead() const {
  std::lock_guard lock(ahead_mu_);
  return ahead_.size();
}

void Zygote::OnAheadTaken(std::function<void()> callback) {
  std::lock_guard lock(ahead_mu_);
  on_ahead_taken_ = std::move(callback);
}

std::optional<Zygote::Ahead> Zygote::TakeAhead() {
  std::lock_guard lock(ahead_mu_);
  while (!ahead_.empty()) {
    Ahead a = std::move(ahead_.front());
    ahead_.pop_front();
    // Its init alive and everything silent: a byte on fd 1 or 2 or on the status socket would
    // become the run's. One that fails is dropped.
    pollfd p[4] = {{a.pid_fd.get(), POLLIN, 0},
                   {a.out_r.get(), POLLIN, 0},
                   {a.err_r.get(), POLLIN, 0},
                   {a.status.get(), POLLIN, 0}};
    if (on_ahead_taken_) on_ahead_taken_();
    if (::poll(p, 4, 0) != 0) {
      Drop(a.id, a.pid_fd.get());
      continue;
    }
    return a;
  }
  return std::nullopt;
}

Result<std::unique_ptr<Zygote>> Sandbox::StartZygote(const SandboxSpec& spec,
                                                     std::chrono::milliseconds ready_timeout) {
  auto runs_filter = CachedSeccomp(spec.extra_syscalls);
  if (!runs_filter) return std::unexpected(runs_filter.error());
  SandboxSpec server = spec;
  server.binds.push_back({POLYRUN_ZYGOTE_FACTORY, false, kZygoteFactoryPath});
  server.limits.processes += kRunsInFlight;
  auto prepared = Prepare(server, /*keep_stdin=*/false, /*fork_server=*/true);
  if (!prepared) return std::unexpected(prepared.error());
  StartedTree& tree = *prepared->tree_;
  tree.stdin_w.reset();  // the server reads no stdin; each run gets its own
  UniqueFd control = std::move(tree.fr_r);
  const auto& filter = (*runs_filter)->filter;
  const std::string_view filter_bytes(reinterpret_cast<const char*>(filter.data()),
                                      filter.size() * sizeof(sock_filter));
  if (auto r = SendWithFds(control.get(), filter_bytes, {}); !r) return std::unexpected(r.error());
  const int waited = WaitReadable(control.get(), tree.pid_fd.get(), Clock::now() + ready_timeout);
  char ready = 0;
  if (waited == 1 && ::read(control.get(), &ready, 1) == 1 && ready == 'R') {
    return std::unique_ptr<Zygote>(
        new Zygote(std::move(*prepared), std::move(control), spec.limits));
  }
  if (waited == 0) return Fail(Errc::kTimeout, "zygote: not ready in time");
  const std::string said = Said(tree.err_r.get());
  return Fail(Errc::kInternal, "zygote: ended or said something else before it was ready" +
                                   (said.empty() ? std::string() : ": " + said));
}

Result<SandboxOutcome> Sandbox::RunInZygote(Zygote& zygote, const SandboxSpec& run) {
  const SandboxLimits& lim = run.limits;
  if (!run.collect.empty()) {
    return Fail(Errc::kInvalidArgument, "zygote: a run forked from a zygote collects no files");
  }
  if (!zygote.CanServe(lim)) {
    return Fail(Errc::kInvalidArgument,
                "zygote: the run's file size, open files or stack limit exceeds the zygote's");
  }
  StartedTree& server = *zygote.tree_.tree_;
  if (!server.pid_fd.valid()) return Fail(Errc::kUnavailable, "zygote: gone");

  auto cgroup = config_.cgroups->CreateRun({lim.memory_bytes, lim.processes});
  if (!cgroup) return std::unexpected(cgroup.error());
  // Opened here, written by the run's first process: the kernel checks the opener's rights.
  std::vector<UniqueFd> cgroup_files;
  std::vector<int> cgroup_fds;
  for (const auto& file : (*cgroup)->SelfMoveFiles()) {
    UniqueFd fd(::open(file.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd.valid()) return SysFail("open", file);
    cgroup_fds.push_back(fd.get());
    cgroup_files.push_back(std::move(fd));
  }

  // A run forked ahead has its tmpfs mounted at the zygote's sizes.
  if (lim.work_dir_bytes == zygote.limits_.work_dir_bytes &&
      lim.tmp_bytes == zygote.limits_.tmp_bytes) {
    if (auto ahead = zygote.TakeAhead()) {
      const auto start = Clock::now();
      const std::string go = "{\"go\":" + std::to_string(ahead->id) + "," + RlimitsJson(lim) + "}";
      std::unique_lock lock(zygote.send_mu_);
      if (SendWithFds(zygote.control_.get(), go, cgroup_fds)) {
        lock.unlock();
        cgroup_files.clear();  // the program has its own copies
        zygote.runs_.fetch_add(1);
        zygote.runs_ahead_.fetch_add(1);
        auto tree = ForkedTree(std::move(ahead->pid_fd), std::move(*cgroup),
                               std::move(ahead->stdin_w), std::move(ahead->out_r),
                               std::move(ahead->err_r), std::move(ahead->status), start);
        return Supervise(*tree, run, start, 0, FdThree::kFrames, run.stdin_data);
      }
      // The server is gone: the on-demand path below says so.
    }
  }

  auto channels = MakeRunChannels(config_.host_uid, config_.host_gid);
  if (!channels) return std::unexpected(channels.error());
  const std::string message = "{\"work\":" + std::to_string(lim.work_dir_bytes) +
                              ",\"tmp\":" + std::to_string(lim.tmp_bytes) + "," + RlimitsJson(lim) +
                              "}";
  std::vector<int> fds = channels->RunEnds();
  fds.insert(fds.end(), cgroup_fds.begin(), cgroup_fds.end());

  const auto start = Clock::now();
  {
    std::lock_guard lock(zygote.send_mu_);
    if (auto r = SendWithFds(zygote.control_.get(), message, fds); !r) {
      return Fail(Errc::kUnavailable, "zygote: gone (" + r.error().message() + ")");
    }
  }
  zygote.runs_.fetch_add(1);
  channels->CloseRunEnds();
  cgroup_files.clear();

  // The run's init answers with its pidfd, or with a report of why it could not start.
  auto answer = AwaitInit(channels->status_host.get(), server.pid_fd.get(),
                          start + std::min<Millis>(lim.wall_time, std::chrono::seconds(10)));
  if (!answer) return std::unexpected(answer.error());
  if (!answer->failed.empty()) {
    SandboxOutcome outcome;
    outcome.termination = Termination::kSetupFailed;
    outcome.setup_error = answer->failed;
    return outcome;
  }
  auto tree = ForkedTree(std::move(answer->pid_fd), std::move(*cgroup),
                         std::move(channels->in.write), std::move(channels->out.read),
                         std::move(channels->err.read), std::move(channels->status_host), start);
  return Supervise(*tree, run, start, 0, FdThree::kFrames, run.stdin_data);
}

Result<void> Sandbox::ForkAhead(Zygote& zygote, std::chrono::milliseconds timeout) {
  StartedTree& server = *zygote.tree_.tree_;
  if (!server.pid_fd.valid()) return Fail(Errc::kUnavailable, "zygote: gone");
  auto channels = MakeRunChannels(config_.host_uid, config_.host_gid);
  if (!channels) return std::unexpected(channels.error());
  const uint64_t id = zygote.next_ahead_id_.fetch_add(1);
  const std::string message = "{\"ahead\":true,\"id\":" + std::to_string(id) +
                              ",\"work\":" + std::to_string(zygote.limits_.work_dir_bytes) +
                              ",\"tmp\":" + std::to_string(zygote.limits_.tmp_bytes) + "}";
  {
    std::lock_guard lock(zygote.send_mu_);
    if (auto r = SendWithFds(zygote.control_.get(), message, channels->RunEnds()); !r) {
      return Fail(Errc::kUnavailable, "zygote: gone (" + r.error().message() + ")");
    }
  }
  channels->CloseRunEnds();
  auto answer = AwaitInit(channels->status_host.get(), server.pid_fd.get(), Clock::now() + timeout);
  if (!answer || !answer->failed.empty()) {
    zygote.Drop(id, answer ? answer->pid_fd.get() : -1);
    if (!answer) return std::unexpected(answer.error());
    return Fail(Errc::kUnavailable, "zygote: a run forked ahead failed: " + answer->failed);
  }
  std::lock_guard lock(zygote.ahead_mu_);
  zygote.ahead_.push_back({id, std::move(answer->pid_fd), std::move(channels->in.write),
                           std::move(channels->out.read), std::move(channels->err.read),
                           std::move(channels->status_host)});
  return {};
}

}  // namespace polyrun::sandbox
