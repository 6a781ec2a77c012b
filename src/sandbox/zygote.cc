#include "sandbox/zygote.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "sandbox/child_plan.h"
#include "sandbox/started_tree.h"
#include "util/files.h"

namespace polyrun::sandbox {

namespace {

using Clock = std::chrono::steady_clock;

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

}  // namespace

Zygote::Zygote(PreparedSandbox tree, UniqueFd control, SandboxLimits limits)
    : tree_(std::move(tree)), control_(std::move(control)), limits_(limits) {}

Zygote::~Zygote() = default;  // the tree's destructor kills the server's whole PID namespace

bool Zygote::CanServe(const SandboxLimits& run) const {
  return run.file_size_bytes <= limits_.file_size_bytes && run.open_files <= limits_.open_files &&
         run.stack_bytes <= limits_.stack_bytes;
}

bool Zygote::Alive() const {
  return tree_.Healthy();
}

uint64_t Zygote::MemoryPeakBytes() const {
  return tree_.MemoryPeakBytes();
}

Result<std::unique_ptr<Zygote>> Sandbox::StartZygote(const SandboxSpec& spec,
                                                     std::chrono::milliseconds ready_timeout) {
  auto runs_filter = CachedSeccomp(spec.extra_syscalls);
  if (!runs_filter) return std::unexpected(runs_filter.error());
  auto prepared = Prepare(spec, /*keep_stdin=*/false, /*fork_server=*/true);
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

  auto cgroup = config_.cgroups->Create(NextRunCgroupName(), {lim.memory_bytes, lim.processes});
  if (!cgroup) return std::unexpected(cgroup.error());
  auto in = MakePipe(), out = MakePipe(), err = MakePipe();
  for (auto* p : {&in, &out, &err}) {
    if (!*p) return std::unexpected(p->error());
    // As in Prepare: the program's own streams belong to the sandbox user.
    if (::fchown((*p)->read.get(), config_.host_uid, config_.host_gid) != 0 && errno != EPERM) {
      return SysFail("fchown", "sandbox stdio pipe");
    }
  }
  int st[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, st) != 0) {
    return SysFail("socketpair", "zygote run status");
  }
  UniqueFd status_r(st[0]), status_w(st[1]);
  // Opened here, written by the run's first process: the kernel checks the opener's rights.
  std::vector<UniqueFd> cgroup_files;
  for (const auto& file : (*cgroup)->SelfMoveFiles()) {
    UniqueFd fd(::open(file.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd.valid()) return SysFail("open", file);
    cgroup_files.push_back(std::move(fd));
  }

  auto rl = [](int resource, uint64_t soft, uint64_t hard) {
    return "[" + std::to_string(resource) + "," + std::to_string(soft) + "," +
           std::to_string(hard) + "]";
  };
  const auto cpu_s = static_cast<uint64_t>((lim.cpu_time.count() + 999) / 1000);
  const std::string message = "{\"work\":" + std::to_string(lim.work_dir_bytes) +
                              ",\"tmp\":" + std::to_string(lim.tmp_bytes) + ",\"rlimits\":[" +
                              rl(RLIMIT_CORE, 0, 0) + "," +
                              rl(RLIMIT_FSIZE, lim.file_size_bytes, lim.file_size_bytes) + "," +
                              rl(RLIMIT_NOFILE, lim.open_files, lim.open_files) + "," +
                              rl(RLIMIT_STACK, lim.stack_bytes, lim.stack_bytes) + "," +
                              rl(RLIMIT_CPU, cpu_s + 1, cpu_s + 2) + "]}";
  std::vector<int> fds = {in->read.get(), out->write.get(), err->write.get(), status_w.get()};
  for (const auto& fd : cgroup_files) fds.push_back(fd.get());

  const auto start = Clock::now();
  {
    std::lock_guard lock(zygote.send_mu_);
    if (auto r = SendWithFds(zygote.control_.get(), message, fds); !r) {
      return Fail(Errc::kUnavailable, "zygote: gone (" + r.error().message() + ")");
    }
  }
  zygote.runs_.fetch_add(1);
  in->read.reset();
  out->write.reset();
  err->write.reset();
  status_w.reset();
  cgroup_files.clear();

  // The run's init answers with its pidfd, or with a report of why it could not start.
  const auto answer_by = start + std::min<Millis>(lim.wall_time, std::chrono::seconds(10));
  const int waited = WaitReadable(status_r.get(), server.pid_fd.get(), answer_by);
  if (waited == 0) return Fail(Errc::kUnavailable, "zygote: no answer in time");
  if (waited < 0) return Fail(Errc::kUnavailable, "zygote: ended");
  auto answer = Receive(status_r.get(), sizeof(InitReport), 1);
  if (!answer) return std::unexpected(answer.error());
  if (answer->bytes == "P" && answer->fds.size() == 1) {
    auto tree = std::make_unique<StartedTree>();
    tree->pid_fd = std::move(answer->fds[0]);
    tree->cgroup = std::move(*cgroup);
    tree->stdin_w = std::move(in->write);
    tree->out_r = std::move(out->read);
    tree->err_r = std::move(err->read);
    tree->st_r = std::move(status_r);
    tree->start = start;
    tree->status_cap = sizeof(InitReport);
    return Supervise(*tree, run, start, 0);
  }
  InitReport report;
  if (answer->bytes.size() != sizeof report) {
    return Fail(Errc::kUnavailable, "zygote: the run ended before it started");
  }
  std::memcpy(&report, answer->bytes.data(), sizeof report);
  SandboxOutcome outcome;
  outcome.termination = Termination::kSetupFailed;
  outcome.setup_error = std::string(report.what, strnlen(report.what, sizeof report.what)) +
                        (report.err != 0 ? ": " + std::string(std::strerror(report.err)) : "");
  return outcome;
}

}  // namespace polyrun::sandbox
