#include "sandbox/sandbox.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <sstream>

#include "sandbox/child_plan.h"
#include "sandbox/default_seccomp.h"
#include "sandbox/exec_stub.h"
#include "sandbox/graveyard.h"
#include "sandbox/netns_pool.h"
#include "sandbox/seccomp_policy.h"
#include "sandbox/started_tree.h"
#include "util/files.h"
#include "util/strings.h"
#include "util/unique_fd.h"

namespace polyrun::sandbox {

namespace {

using Clock = std::chrono::steady_clock;

// clone3(2)'s argument (linux/sched.h, 5.7+), spelled out to avoid mixing kernel and libc headers.
struct CloneArgs {
  uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
      set_tid_size, cgroup;
};
constexpr uint64_t kCloneIntoCgroup = 0x200000000ULL;
constexpr uid_t kInnerId = 1000;
constexpr std::chrono::milliseconds kTick{10};

const char kPasswd[] =
    "root:x:0:0:root:/root:/bin/sh\n"
    "sandbox:x:1000:1000:sandbox:/work:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
const char kGroup[] = "root:x:0:\nsandbox:x:1000:\nnogroup:x:65534:\n";
const char kHosts[] = "127.0.0.1 localhost sandbox\n::1 localhost ip6-localhost\n";

// The cgroup of a tree built here: the run's memory, and its processes plus the tree's init,
// which is polyrun's and not counted against the run (a zygote's run has its init outside its
// cgroup). pids.max takes nothing above PID_MAX_LIMIT.
CgroupLimits TreeCgroupLimits(const SandboxLimits& lim) {
  constexpr uint64_t kPidMaxLimit = 4u << 20;
  return {lim.memory_bytes, std::min(lim.processes + 1, kPidMaxLimit)};
}

// Seccomp programs are immutable; build each distinct profile once.
}  // namespace

Result<std::shared_ptr<const SeccompProgram>> CachedSeccomp(const std::vector<std::string>& extra,
                                                            bool fork_server) {
  static std::mutex mu;
  static std::map<std::pair<bool, std::vector<std::string>>, std::shared_ptr<const SeccompProgram>>
      cache;
  std::lock_guard lock(mu);
  const auto key = std::make_pair(fork_server, extra);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  if (extra.empty() && !fork_server) {
    auto filter = DefaultSeccompFilter();
    auto shared = std::make_shared<const SeccompProgram>(
        SeccompProgram{std::vector<sock_filter>(filter.begin(), filter.end())});
    cache.emplace(key, shared);
    return shared;
  }
  auto prog = BuildSeccompProgram(extra, fork_server);
  if (!prog) return std::unexpected(prog.error());
  auto shared = std::make_shared<const SeccompProgram>(std::move(*prog));
  cache.emplace(key, shared);
  return shared;
}

namespace {

class PlanBuilder {
 public:
  explicit PlanBuilder(std::string root) : root_(std::move(root)) {}

  void Mkdir(const std::string& inner, unsigned mode = 0755) {
    if (!made_.insert(inner).second) return;
    auto slash = inner.rfind('/');
    if (slash != 0 && slash != std::string::npos) Mkdir(inner.substr(0, slash));
    Add({SetupStep::kMkdir, "", root_ + inner, "", nullptr, 0, mode, 0});
  }
  void Parent(const std::string& inner) {
    auto slash = inner.rfind('/');
    if (slash != 0 && slash != std::string::npos) Mkdir(inner.substr(0, slash));
  }
  void Tmpfs(const std::string& inner, const std::string& options, unsigned long flags) {
    if (inner != "/") Mkdir(inner);
    Add({SetupStep::kTmpfs, "", root_ + (inner == "/" ? "" : inner), options, nullptr, 0, 0,
         flags});
  }
  void Symlink(const std::string& inner, const std::string& link_text) {
    Parent(inner);
    made_.insert(inner);
    Add({SetupStep::kSymlink, link_text, root_ + inner, "", nullptr, 0, 0, 0});
  }
  void File(const std::string& inner, const char* data, size_t size, unsigned mode) {
    Parent(inner);
    Add({SetupStep::kFile, "", root_ + inner, "", data, size, mode, 0});
  }
  // Returns false when the host lacks `host_path`. `inner` is where it appears.
  bool Bind(const std::string& host_path, const std::string& inner) {
    struct stat st {};
    if (::lstat(host_path.c_str(), &st) != 0) return false;
    if (S_ISLNK(st.st_mode)) {
      char target[4096];
      ssize_t n = ::readlink(host_path.c_str(), target, sizeof target - 1);
      if (n < 0) return false;
      target[n] = '\0';
      if (!made_.contains(inner)) Symlink(inner, target);
      return true;
    }
    if (S_ISDIR(st.st_mode)) {
      Mkdir(inner);
    } else {
      Parent(inner);
      Add({SetupStep::kTouch, "", root_ + inner, "", nullptr, 0, 0644, 0});
    }
    Add({SetupStep::kBind, host_path, root_ + inner, "", nullptr, 0, 0, 0});
    return true;
  }
  void Device(const std::string& name) {
    std::string inner = "/dev/" + name;
    Add({SetupStep::kTouch, "", root_ + inner, "", nullptr, 0, 0666, 0});
    Add({SetupStep::kDeviceBind, inner, root_ + inner, "", nullptr, 0, 0, 0});
  }
  void Proc(const std::string& inner) {
    Mkdir(inner);
    Add({SetupStep::kProc, "", root_ + inner, "", nullptr, 0, 0, 0});
  }
  void ReadOnly(const std::string& inner) {
    Add({SetupStep::kReadOnly, "", root_ + inner, "", nullptr, 0, 0, 0});
  }

  std::vector<SetupStep> Take() { return std::move(steps_); }

 private:
  void Add(SetupStep s) { steps_.push_back(std::move(s)); }
  std::string root_;
  std::vector<SetupStep> steps_;
  std::set<std::string> made_;
};

// Reads whatever is available from a non-blocking fd. Returns false at EOF or error.
bool Drain(int fd, const std::function<void(std::string_view)>& sink) {
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      sink(std::string_view(buf, static_cast<size_t>(n)));
      continue;
    }
    if (n == 0) return false;
    if (errno == EINTR) continue;
    return errno == EAGAIN;
  }
}

// Where this process's argv and environment strings live (/proc/self/stat fields 48-51), so
// the init can wipe its copies. Read once; zeros (nothing to wipe) if unavailable.
struct ArgEnvArea {
  uintptr_t arg_start = 0, arg_end = 0, env_start = 0, env_end = 0;
};

const ArgEnvArea& SelfArgEnvArea() {
  static const ArgEnvArea area = [] {
    ArgEnvArea a;
    auto stat = ReadTrustedFile("/proc/self/stat", 1u << 16);
    if (!stat) return a;
    auto close = stat->rfind(')');
    if (close == std::string::npos || close + 2 > stat->size()) return a;
    auto fields = Split(stat->substr(close + 2), ' ');  // fields[0] is field 3 (state)
    auto field = [&](size_t n) -> uintptr_t {
      if (n - 3 >= fields.size()) return 0;
      return static_cast<uintptr_t>(std::strtoull(fields[n - 3].c_str(), nullptr, 10));
    };
    a = {field(48), field(49), field(50), field(51)};
    if (a.arg_end < a.arg_start) a.arg_start = a.arg_end = 0;
    if (a.env_end < a.env_start) a.env_start = a.env_end = 0;
    return a;
  }();
  return area;
}

Result<void> WriteProcFile(pid_t pid, const char* file, const std::string& content) {
  std::string dir = "/proc/" + std::to_string(pid);
  auto fd = OpenDir(dir);
  if (!fd) return std::unexpected(fd.error());
  return WriteFileAt(fd->get(), file, content);
}

}  // namespace

Result<void> ValidateRelativePath(const std::string& name) {
  if (name.empty()) return Fail(Errc::kInvalidArgument, "file name is empty");
  if (name.size() > 4096)
    return Fail(Errc::kInvalidArgument, "file name is longer than 4096 bytes");
  if (name.find('\0') != std::string::npos) {
    return Fail(Errc::kInvalidArgument, "file name contains a NUL byte");
  }
  if (name.front() == '/') {
    return Fail(Errc::kInvalidArgument, "file name \"" + name + "\" must be relative");
  }
  for (const auto& part : Split(name, '/')) {
    if (part.empty() || part == "." || part == "..") {
      return Fail(Errc::kInvalidArgument,
                  "file name \"" + name + "\" has an empty, \".\" or \"..\" component");
    }
    if (part.size() > 255) {
      return Fail(Errc::kInvalidArgument,
                  "file name \"" + name + "\" has a component over 255 bytes");
    }
  }
  return {};
}

Result<std::unique_ptr<Sandbox>> Sandbox::Create(SandboxConfig config) {
  if (!config.cgroups) return Fail(Errc::kUnsupported, "sandbox: no cgroup manager");
  if (config.host_uid == static_cast<uid_t>(-1)) {
    config.host_uid = ::geteuid() == 0 ? 65534 : ::geteuid();
  }
  if (config.host_gid == static_cast<gid_t>(-1)) {
    config.host_gid = ::geteuid() == 0 ? 65534 : ::getegid();
  }
  // Only directories that exist can hold the staging mount; checked once, not per run.
  std::erase_if(config.staging_dirs, [](const std::string& dir) {
    struct stat st {};
    return ::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode);
  });
  if (auto prog = CachedSeccomp({}); !prog) return std::unexpected(prog.error());
  // The far end of a run's pipes is the program: one that ends without reading its stdin
  // would end this process at the next write with SIGPIPE's default action. Every write to
  // such a pipe, here and in the engine, handles EPIPE instead.
  struct sigaction pipe_action {};
  if (::sigaction(SIGPIPE, nullptr, &pipe_action) == 0 && pipe_action.sa_handler == SIG_DFL) {
    ::signal(SIGPIPE, SIG_IGN);
  }
  std::unique_ptr<Sandbox> sandbox(new Sandbox(std::move(config)));
  // Chosen once: where this process may (root), it makes each run's network namespace (ahead
  // of need unless netns_ready is 0); otherwise each run makes its own.
  if (auto pool = NetnsPool::Create(sandbox->config_.netns_ready)) {
    sandbox->netns_ = std::move(*pool);
  }
  return sandbox;
}

Sandbox::Sandbox(SandboxConfig config)
    : config_(std::move(config)), graveyard_(std::make_unique<Graveyard>()) {}
Sandbox::~Sandbox() = default;

Result<void> Sandbox::Settle() {
  return graveyard_->Settle();
}

uint64_t Sandbox::TeardownFailures() const {
  return graveyard_->failures();
}

PreparedSandbox::PreparedSandbox(std::unique_ptr<StartedTree> tree) : tree_(std::move(tree)) {}
PreparedSandbox::PreparedSandbox(PreparedSandbox&&) noexcept = default;
PreparedSandbox& PreparedSandbox::operator=(PreparedSandbox&&) noexcept = default;
PreparedSandbox::~PreparedSandbox() = default;

Result<void> PreparedSandbox::WaitReady(std::chrono::milliseconds timeout) {
  if (!tree_ || !tree_->fr_r.valid()) {
    return Fail(Errc::kInvalidArgument, "sandbox: not prepared with a frames channel");
  }
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    pollfd p{tree_->fr_r.get(), POLLIN, 0};
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    const int ready = ::poll(&p, 1, static_cast<int>(std::max<int64_t>(0, left.count())));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return SysFail("poll", "sandbox readiness");
    if (ready == 0) return Fail(Errc::kTimeout, "sandbox: the program was not ready in time");
    char c = 0;
    const ssize_t n = ::read(tree_->fr_r.get(), &c, 1);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n != 1 || c != 'R') {
      // What it said on stderr (non-blocking: the pipe is ours) is the operator's best clue.
      std::string said;
      SetNonBlocking(tree_->err_r.get());
      Drain(tree_->err_r.get(), [&](std::string_view chunk) {
        said.append(chunk.substr(0, std::min<size_t>(chunk.size(), 2048 - said.size())));
      });
      return Fail(Errc::kInternal,
                  "sandbox: the program ended or wrote something else before it was ready" +
                      (said.empty() ? std::string() : ": " + said));
    }
    // Kept: the bootstrap keeps its end to say when the run is over (Sandbox::Claim).
    return {};
  }
}

bool PreparedSandbox::Healthy() const {
  if (!tree_ || !tree_->pid_fd.valid()) return false;
  // Alive, and silent since it was started: a byte on fd 1 or 2 or a status report would
  // become the next run's.
  pollfd p[4] = {{tree_->pid_fd.get(), POLLIN, 0},
                 {tree_->out_r.get(), POLLIN, 0},
                 {tree_->err_r.get(), POLLIN, 0},
                 {tree_->st_r.get(), POLLIN, 0}};
  return ::poll(p, 4, 0) == 0;
}

uint64_t PreparedSandbox::MemoryPeakBytes() const {
  if (!tree_ || !tree_->cgroup) return 0;
  auto u = tree_->cgroup->Usage();
  return u ? u->memory_peak_bytes : 0;
}

Result<SandboxOutcome> Sandbox::Run(const SandboxSpec& spec) {
  auto prepared = Prepare(spec, /*keep_stdin=*/false);
  if (!prepared) return std::unexpected(prepared.error());
  auto& tree = *prepared->tree_;
  return Supervise(tree, spec, tree.start, 0, FdThree::kFrames, spec.stdin_data);
}

Result<SandboxOutcome> Sandbox::Claim(PreparedSandbox prepared, const SandboxSpec& run) {
  if (!prepared.tree_ || !prepared.tree_->pid_fd.valid()) {
    return Fail(Errc::kInvalidArgument, "sandbox: claimed an empty or used prepared sandbox");
  }
  if (prepared.tree_->exec_stub) {
    return Fail(Errc::kInvalidArgument, "sandbox: a prebuilt sandbox is run with RunPrebuilt");
  }
  return SuperviseClaimed(*prepared.tree_, run, FdThree::kBootstrapEnd, run.stdin_data);
}

Result<PreparedSandbox> Sandbox::Prebuild(const SandboxSpec& spec) {
  SandboxSpec stub = spec;
  stub.argv = {kExecStubPath};
  stub.env.clear();
  stub.files.clear();
  stub.collect.clear();
  stub.binds.push_back({POLYRUN_EXEC_STUB, false, kExecStubPath});
  stub.frames_channel = true;  // its "R", and its report if it cannot become the program
  auto prepared = Prepare(stub, /*keep_stdin=*/true);
  if (prepared) prepared->tree_->exec_stub = true;
  return prepared;
}

Result<SandboxOutcome> Sandbox::RunPrebuilt(PreparedSandbox prepared, const SandboxSpec& run) {
  if (!prepared.tree_ || !prepared.tree_->pid_fd.valid() || !prepared.tree_->exec_stub) {
    return Fail(Errc::kInvalidArgument, "sandbox: not an unused prebuilt sandbox");
  }
  if (auto serves = PrebuiltServes(run); !serves) return std::unexpected(serves.error());
  // Nothing of the run has started yet: its own memory and process limits take the place of
  // those the tree was built with (the init and polyrun-exec hold a few hundred KB).
  StartedTree& tree = *prepared.tree_;
  const CgroupLimits wanted = TreeCgroupLimits(run.limits);
  if (wanted.memory_bytes != tree.cgroup_limits.memory_bytes ||
      wanted.pids != tree.cgroup_limits.pids) {
    if (auto r = tree.cgroup->SetLimits(wanted); !r) return std::unexpected(r.error());
    tree.cgroup_limits = wanted;
  }
  const std::string request = EncodeExecRequest(run.argv, run.env, run.files, run.stdin_data);
  return SuperviseClaimed(tree, run, FdThree::kExecReport, request);
}

Result<void> Sandbox::PrebuiltServes(const SandboxSpec& run) {
  if (run.frames_channel || !run.collect.empty()) {
    return Fail(Errc::kInvalidArgument,
                "sandbox: a prebuilt sandbox serves no frames channel and collects nothing");
  }
  if (run.argv.empty() || run.argv[0].empty() || run.argv[0][0] != '/') {
    return Fail(Errc::kInvalidArgument, "sandbox: argv[0] must be an absolute path");
  }
  for (const auto& f : run.files) {
    if (auto r = ValidateRelativePath(f.name); !r) return std::unexpected(r.error());
    if (f.content.size() > run.limits.file_size_bytes) {
      return Fail(Errc::kInvalidArgument,
                  "sandbox: file \"" + f.name + "\" is larger than the file size limit");
    }
  }
  return {};
}

Result<SandboxOutcome> Sandbox::SuperviseClaimed(StartedTree& tree, const SandboxSpec& run,
                                                 FdThree fd3, std::string_view stdin_data) {
  uint64_t cpu_base = 0;
  if (auto u = tree.cgroup->Usage(); u) cpu_base = u->cpu_ns;
  // The per-process RLIMIT_CPU, the second fence behind the cgroup's accounting, was set when
  // the tree was built, before this run's CPU limit was known: bring the program's down to the
  // run's now (its children inherit it), counting the CPU the tree used before the claim.
  const auto cpu_s = static_cast<uint64_t>((run.limits.cpu_time.count() + 999) / 1000) +
                     (cpu_base + 999'999'999) / 1'000'000'000;
  const rlimit wanted{static_cast<rlim_t>(cpu_s + 1), static_cast<rlim_t>(cpu_s + 2)};
  const std::string children_file =
      "/proc/" + std::to_string(tree.pid) + "/task/" + std::to_string(tree.pid) + "/children";
  auto children = ReadTrustedFile(children_file, 4096);
  if (!children) return std::unexpected(children.error());
  std::istringstream pids(*children);
  for (pid_t child = 0; pids >> child;) {
    // Only ever lowered: raising a hard limit takes CAP_SYS_RESOURCE, and the tree's is the
    // largest a run may have anyway. ESRCH: the program already ended; the run reports how.
    rlimit cpu{};
    if (::prlimit(child, RLIMIT_CPU, nullptr, &cpu) == 0) {
      cpu = {std::min(cpu.rlim_cur, wanted.rlim_cur), std::min(cpu.rlim_max, wanted.rlim_max)};
      if (::prlimit(child, RLIMIT_CPU, &cpu, nullptr) == 0) continue;
    }
    if (errno != ESRCH) return SysFail("prlimit", "RLIMIT_CPU of the claimed sandbox's program");
  }
  return Supervise(tree, run, Clock::now(), cpu_base, fd3, stdin_data);
}

Result<PreparedSandbox> Sandbox::Prepare(const SandboxSpec& spec) {
  return Prepare(spec, /*keep_stdin=*/true);
}

Result<PreparedSandbox> Sandbox::Prepare(const SandboxSpec& spec, bool keep_stdin,
                                         bool fork_server) {
  if (spec.argv.empty() || spec.argv[0].empty() || spec.argv[0][0] != '/') {
    return Fail(Errc::kInvalidArgument, "sandbox: argv[0] must be an absolute path");
  }
  for (const auto& f : spec.files) {
    if (auto r = ValidateRelativePath(f.name); !r) return std::unexpected(r.error());
  }
  for (const auto& c : spec.collect) {
    if (auto r = ValidateRelativePath(c); !r) return std::unexpected(r.error());
  }
  const SandboxLimits& lim = spec.limits;
  auto seccomp = CachedSeccomp(spec.extra_syscalls, fork_server);
  if (!seccomp) return std::unexpected(seccomp.error());

  // ---- the plan -------------------------------------------------------------------------
  ChildPlan plan;
  const std::string* staging = nullptr;
  for (const auto& dir : config_.staging_dirs) {
    if (std::none_of(spec.binds.begin(), spec.binds.end(), [&](const BindMount& bind) {
          return bind.path == dir || bind.path.starts_with(dir + "/");
        })) {
      staging = &dir;
      break;
    }
  }
  if (staging == nullptr) {
    return Fail(Errc::kInvalidArgument,
                "sandbox: every staging directory holds a bind source; bind paths elsewhere");
  }
  const std::string& root = *staging;
  plan.new_root = root;
  plan.fork_server = fork_server;
  plan.clear_groups = ::geteuid() == 0;
  plan.inner_uid = kInnerId;
  plan.inner_gid = kInnerId;
  PlanBuilder b(root);
  b.Tmpfs("/", "size=1m,nr_inodes=4096,mode=755", MS_NOSUID | MS_NODEV);
  for (const auto& bind : spec.binds) {
    const std::string& inner = bind.target.empty() ? bind.path : bind.target;
    if (bind.path.empty() || bind.path[0] != '/') {
      return Fail(Errc::kInvalidArgument,
                  "sandbox: bind path \"" + bind.path + "\" is not absolute");
    }
    // The host path is trusted (a manifest's); where it appears must not climb out of the root.
    if (inner[0] != '/' || inner.find("/..") != std::string::npos) {
      return Fail(Errc::kInvalidArgument,
                  "sandbox: bind target \"" + inner + "\" is not absolute and normal");
    }
    if (!b.Bind(bind.path, inner) && !bind.optional) {
      return Fail(Errc::kNotFound, "sandbox: bind path \"" + bind.path + "\" does not exist");
    }
  }
  b.Tmpfs("/dev", "size=64k,nr_inodes=64,mode=755", MS_NOSUID | MS_NOEXEC);
  for (const char* dev : {"null", "zero", "full", "random", "urandom"}) b.Device(dev);
  b.Symlink("/dev/fd", "/proc/self/fd");
  b.Symlink("/dev/stdin", "/proc/self/fd/0");
  b.Symlink("/dev/stdout", "/proc/self/fd/1");
  b.Symlink("/dev/stderr", "/proc/self/fd/2");
  b.Tmpfs("/dev/shm", "size=" + std::to_string(lim.tmp_bytes) + ",nr_inodes=1024,mode=1777",
          MS_NOSUID | MS_NODEV | MS_NOEXEC);
  b.ReadOnly("/dev");
  b.Proc("/proc");
  b.File("/etc/passwd", kPasswd, sizeof kPasswd - 1, 0644);
  b.File("/etc/group", kGroup, sizeof kGroup - 1, 0644);
  b.File("/etc/hosts", kHosts, sizeof kHosts - 1, 0644);
  b.Tmpfs("/tmp", "size=" + std::to_string(lim.tmp_bytes) + ",nr_inodes=16384,mode=1777",
          MS_NOSUID | MS_NODEV);
  b.Tmpfs("/work", "size=" + std::to_string(lim.work_dir_bytes) + ",nr_inodes=16384,mode=755",
          MS_NOSUID | MS_NODEV);
  for (const auto& f : spec.files) {
    b.File("/work/" + f.name, f.content.data(), f.content.size(), f.executable ? 0755 : 0644);
  }
  plan.steps = b.Take();

  auto rl = [](uint64_t v) { return rlimit{static_cast<rlim_t>(v), static_cast<rlim_t>(v)}; };
  const auto cpu_s = static_cast<uint64_t>((lim.cpu_time.count() + 999) / 1000);
  plan.rlimits = {
      {RLIMIT_CORE, rl(0)},
      {RLIMIT_FSIZE, rl(lim.file_size_bytes)},
      {RLIMIT_NOFILE, rl(lim.open_files)},
      {RLIMIT_STACK, rl(lim.stack_bytes)},
      // Second fence behind the cgroup's whole-tree accounting: per process, a little later.
      {RLIMIT_CPU, rlimit{static_cast<rlim_t>(cpu_s + 1), static_cast<rlim_t>(cpu_s + 2)}},
  };
  for (const auto& a : spec.argv) plan.argv.push_back(a.c_str());
  plan.argv.push_back(nullptr);
  for (const auto& e : spec.env) plan.envp.push_back(e.c_str());
  plan.envp.push_back(nullptr);
  for (const auto& c : spec.collect) plan.collect.push_back(c.c_str());
  plan.collect.push_back(nullptr);
  plan.collect_max = spec.collect_max_bytes;
  plan.seccomp = (*seccomp)->fprog();
  const ArgEnvArea& area = SelfArgEnvArea();
  plan.arg_start = area.arg_start;
  plan.arg_end = area.arg_end;
  plan.env_start = area.env_start;
  plan.env_end = area.env_end;

  // ---- descriptors and cgroup -----------------------------------------------------------
  auto in = MakePipe(), out = MakePipe(), err = MakePipe(), status = MakePipe(), sync = MakePipe();
  for (auto* p : {&in, &out, &err, &status, &sync}) {
    if (!*p) return std::unexpected(p->error());
  }
  std::optional<Pipe> frames;
  if (fork_server) {
    // A fork server's control socket: messages both ways, descriptors passed along.
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0) {
      return SysFail("socketpair", "zygote control socket");
    }
    frames = Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
  } else if (spec.frames_channel) {
    auto p = MakePipe();
    if (!p) return std::unexpected(p.error());
    frames = std::move(*p);
  }
  // The program's stdio pipes belong to the sandbox user, so that reopening them by path
  // (/dev/stdin, /dev/stdout, /proc/self/fd/N) passes the inode permission check like outside.
  // They are its own streams: nothing else can be reached through them.
  for (auto* p : {&in, &out, &err}) {
    if (::fchown((*p)->read.get(), config_.host_uid, config_.host_gid) != 0 && errno != EPERM) {
      return SysFail("fchown", "sandbox stdio pipe");
    }
  }
  if (frames && ::fchown(frames->read.get(), config_.host_uid, config_.host_gid) != 0 &&
      errno != EPERM) {
    return SysFail("fchown", "sandbox frames pipe");
  }
  plan.stdin_fd = in->read.get();
  plan.stdout_fd = out->write.get();
  plan.stderr_fd = err->write.get();
  plan.status_fd = status->write.get();
  plan.sync_fd = sync->read.get();
  plan.frames_fd = frames ? frames->write.get() : -1;

  const CgroupLimits cgroup_limits = TreeCgroupLimits(lim);
  auto cgroup = config_.cgroups->CreateRun(cgroup_limits);
  if (!cgroup) return std::unexpected(cgroup.error());

  const std::vector<std::string> join_files = (*cgroup)->SelfJoinFiles();
  for (const auto& f : join_files) plan.join_cgroup_files.push_back(f.c_str());
  plan.join_cgroup_files.push_back(nullptr);

  // ---- clone ----------------------------------------------------------------------------
  const auto start = Clock::now();
  int pidfd = -1;
  uint64_t ns_flags =
      CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_PIDFD;
  // The network namespace: one made ahead, which the child is born in by being cloned from
  // this thread while it is inside (the thread leaves right after), or a new one now.
  UniqueFd netns;
  std::unique_ptr<NetnsPool::Entered> in_netns;
  if (netns_) {
    auto ns = netns_->Take();
    if (!ns) return std::unexpected(ns.error());
    netns = std::move(*ns);
    auto entered = netns_->Enter(netns.get());
    if (!entered) return std::unexpected(entered.error());
    in_netns = std::move(*entered);
  } else {
    ns_flags |= CLONE_NEWNET;
    plan.bring_up_loopback = true;
  }
  // Where the cgroup allows it (v2), the child is born in its cgroup: moving a live process
  // between cgroups costs an RCU grace period (cgroup_threadgroup_rwsem), milliseconds a run.
  bool born_in_cgroup = false;
  long pid = -1;
  if (int into = (*cgroup)->CloneIntoFd(); into >= 0) {
    CloneArgs args{};
    args.flags = ns_flags | kCloneIntoCgroup;
    args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
    args.exit_signal = SIGCHLD;
    args.cgroup = static_cast<uint64_t>(into);
    pid = ::syscall(SYS_clone3, &args, sizeof args);
    if (pid < 0 && errno != ENOSYS && errno != E2BIG)
      return SysFail("clone3", "sandbox namespaces");
    born_in_cgroup = pid >= 0;
  }
  if (pid < 0) pid = ::syscall(SYS_clone, ns_flags | SIGCHLD, nullptr, &pidfd, nullptr, 0);
  if (pid < 0) return SysFail("clone", "sandbox namespaces");
  if (pid == 0) RunContainerInit(plan);
  in_netns.reset();
  netns.reset();  // the run's processes hold it now, and nothing else does
  UniqueFd pid_fd(pidfd);
  in->read.reset();
  out->write.reset();
  err->write.reset();
  status->write.reset();
  sync->read.reset();
  if (frames) frames->write.reset();

  auto abort_child = [&](const Error& e) -> Result<PreparedSandbox> {
    ::syscall(SYS_pidfd_send_signal, pid_fd.get(), SIGKILL, nullptr, 0);
    siginfo_t info{};
    ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pid_fd.get()), &info, WEXITED);
    return std::unexpected(e);
  };
  const std::string uid_map =
      std::to_string(kInnerId) + " " + std::to_string(config_.host_uid) + " 1";
  const std::string gid_map =
      std::to_string(kInnerId) + " " + std::to_string(config_.host_gid) + " 1";
  if (auto r = WriteProcFile(static_cast<pid_t>(pid), "uid_map", uid_map); !r)
    return abort_child(r.error());
  if (!plan.clear_groups) {
    if (auto r = WriteProcFile(static_cast<pid_t>(pid), "setgroups", "deny"); !r) {
      return abort_child(r.error());
    }
  }
  if (auto r = WriteProcFile(static_cast<pid_t>(pid), "gid_map", gid_map); !r)
    return abort_child(r.error());
  if (!born_in_cgroup && join_files.empty()) {
    if (auto r = (*cgroup)->AddProcess(static_cast<pid_t>(pid)); !r) return abort_child(r.error());
  }
  if (!WriteAll(sync->write.get(), "g", 1))
    return abort_child(Error{Errc::kSyscall, "sandbox go", "write", errno});
  sync->write.reset();

  auto tree = std::make_unique<StartedTree>();
  tree->pid = static_cast<pid_t>(pid);
  tree->pid_fd = std::move(pid_fd);
  tree->cgroup = std::move(*cgroup);
  tree->cgroup_limits = cgroup_limits;
  tree->stdin_w = std::move(in->write);
  tree->out_r = std::move(out->read);
  tree->err_r = std::move(err->read);
  tree->st_r = std::move(status->read);
  if (frames) tree->fr_r = std::move(frames->read);
  tree->start = start;
  tree->status_cap = sizeof(InitReport) + spec.collect_max_bytes +
                     spec.collect.size() * (sizeof(ArtifactHeader) + 4096);
  if (!keep_stdin && spec.stdin_fd < 0 && spec.stdin_data.empty()) tree->stdin_w.reset();
  return PreparedSandbox(std::move(tree));
}

Result<SandboxOutcome> Sandbox::Supervise(StartedTree& tree, const SandboxSpec& spec,
                                          Clock::time_point start, uint64_t cpu_base_ns,
                                          FdThree fd3, std::string_view stdin_data) {
  const SandboxLimits& lim = spec.limits;
  UniqueFd& pid_fd = tree.pid_fd;
  Cgroup& cg = *tree.cgroup;
  SandboxOutcome outcome;
  std::optional<Termination> killed_for;
  auto sigkill_tree = [&] {
    ::syscall(SYS_pidfd_send_signal, pid_fd.get(), SIGKILL, nullptr, 0);
    cg.KillAll();
  };
  auto kill_tree = [&](Termination why) {
    if (!killed_for) killed_for = why;
    sigkill_tree();
  };

  std::string status_buf;
  const size_t status_cap = tree.status_cap;
  uint64_t total_out = 0;
  auto capture = [&](Stream stream, std::string_view chunk) {
    if (!spec.retain_output) {
      if (spec.on_output) spec.on_output(stream, chunk);
      return;
    }
    std::string& dst = stream == Stream::kStdout ? outcome.stdout_data : outcome.stderr_data;
    bool& truncated =
        stream == Stream::kStdout ? outcome.stdout_truncated : outcome.stderr_truncated;
    const uint64_t cap = stream == Stream::kStdout ? lim.stdout_bytes : lim.stderr_bytes;
    uint64_t room = std::min<uint64_t>(cap - std::min<uint64_t>(cap, dst.size()),
                                       lim.output_bytes - std::min(lim.output_bytes, total_out));
    std::string_view kept = chunk.substr(0, std::min<uint64_t>(room, chunk.size()));
    if (!kept.empty()) {
      dst.append(kept);
      total_out += kept.size();
      if (spec.on_output) spec.on_output(stream, kept);
    }
    if (kept.size() < chunk.size()) {
      truncated = true;
      kill_tree(Termination::kOutputLimit);
    }
  };

  std::string_view stdin_left = stdin_data;
  UniqueFd stdin_w = std::move(tree.stdin_w);
  if (stdin_w.valid()) SetNonBlocking(stdin_w.get());
  std::string pump_buf;  // bytes read from spec.stdin_fd not yet written
  bool pump_eof = spec.stdin_fd < 0;
  if (spec.stdin_fd < 0 && stdin_left.empty()) stdin_w.reset();

  UniqueFd out_r = std::move(tree.out_r), err_r = std::move(tree.err_r),
           st_r = std::move(tree.st_r);
  UniqueFd fr_r = std::move(tree.fr_r);
  for (int fd : {out_r.get(), err_r.get(), st_r.get(), fr_r.get()}) {
    if (fd >= 0) SetNonBlocking(fd);
  }
  std::string frame_bytes;  // read from fd 3, delivered once fds 1 and 2 have been drained
  // A warm bootstrap's end on fd 3 ("E" and the exit code), once it has flushed the program's
  // output: the run is over before its interpreter's exit and teardown (docs/performance.md).
  std::string end_bytes;
  std::string exec_report;  // kExecReport: polyrun-exec's InitReport
  bool status_closed = false;
  // Frames first, then stdout/stderr to EAGAIN, then the frames' delivery: output written
  // before a frame is in its pipe by the time the frame is read, so it is delivered first.
  auto drain_streams = [&] {
    if (out_r.valid() &&
        !Drain(out_r.get(), [&](std::string_view c) { capture(Stream::kStdout, c); })) {
      out_r.reset();
    }
    if (err_r.valid() &&
        !Drain(err_r.get(), [&](std::string_view c) { capture(Stream::kStderr, c); })) {
      err_r.reset();
    }
  };
  auto deliver_frames = [&] {
    if (frame_bytes.empty()) return;
    if (spec.on_frames) spec.on_frames(frame_bytes);
    frame_bytes.clear();
  };
  auto drain_frames = [&] {
    // A writer faster than us would grow frame_bytes without end: hand over each MiB.
    bool open = fr_r.valid() && Drain(fr_r.get(), [&](std::string_view c) {
                  if (fd3 == FdThree::kBootstrapEnd) {
                    if (end_bytes.size() < 3) end_bytes.append(c.substr(0, 3 - end_bytes.size()));
                    return;
                  }
                  if (fd3 == FdThree::kExecReport) {
                    const size_t room = sizeof(InitReport) - exec_report.size();
                    exec_report.append(c.substr(0, std::min(room, c.size())));
                    return;
                  }
                  frame_bytes.append(c);
                  if (frame_bytes.size() >= (1u << 20)) {
                    drain_streams();
                    deliver_frames();
                  }
                });
    if (!open) fr_r.reset();
  };
  bool signals_open = spec.signal_fd >= 0;
  bool init_done = false;
  const auto deadline = start + lim.wall_time;
  auto next_tick = start + kTick;
  std::optional<Clock::time_point> drain_deadline;
  uint64_t cpu_ns = 0;

  for (;;) {
    pollfd all[9];
    nfds_t n = 0;
    auto add = [&](int fd, short events) {
      all[n] = {fd, events, 0};
      return static_cast<int>(n++);
    };
    const int idx_pid = init_done ? -1 : add(pid_fd.get(), POLLIN);
    const int idx_out = out_r.valid() ? add(out_r.get(), POLLIN) : -1;
    const int idx_err = err_r.valid() ? add(err_r.get(), POLLIN) : -1;
    const int idx_st = st_r.valid() ? add(st_r.get(), POLLIN) : -1;
    const bool want_write = stdin_w.valid() && (!stdin_left.empty() || !pump_buf.empty());
    const int idx_in = want_write ? add(stdin_w.get(), POLLOUT) : -1;
    const bool want_read = !pump_eof && pump_buf.size() < 65536 && stdin_w.valid();
    const int idx_src = want_read ? add(spec.stdin_fd, POLLIN) : -1;
    const int idx_cancel = spec.cancel_fd >= 0 && !killed_for ? add(spec.cancel_fd, POLLIN) : -1;
    const int idx_fr = fr_r.valid() ? add(fr_r.get(), POLLIN) : -1;
    const int idx_sig = signals_open && !killed_for ? add(spec.signal_fd, POLLIN) : -1;

    if (init_done && !out_r.valid() && !err_r.valid() && !st_r.valid() && !fr_r.valid()) break;
    auto now = Clock::now();
    if (init_done && !drain_deadline) drain_deadline = now + std::chrono::seconds(2);
    if (drain_deadline && now >= *drain_deadline) break;  // never hang on a stray write end
    auto wake = std::min(next_tick, killed_for ? next_tick : deadline);
    if (drain_deadline) wake = std::min(wake, *drain_deadline);
    int timeout = static_cast<int>(
        std::max<int64_t>(0, std::chrono::ceil<std::chrono::milliseconds>(wake - now).count()));
    int ready = ::poll(all, n, timeout);
    if (ready < 0 && errno != EINTR) {
      kill_tree(Termination::kSetupFailed);
      outcome.setup_error = std::string("poll: ") + std::strerror(errno);
    }
    if (ready > 0) {
      if (idx_pid >= 0 && (all[idx_pid].revents & (POLLIN | POLLHUP | POLLERR))) init_done = true;
      if (idx_fr >= 0 && all[idx_fr].revents) {
        drain_frames();
        drain_streams();
      }
      if (idx_out >= 0 && out_r.valid() && all[idx_out].revents) {
        if (!Drain(out_r.get(), [&](std::string_view c) { capture(Stream::kStdout, c); }))
          out_r.reset();
      }
      if (idx_err >= 0 && err_r.valid() && all[idx_err].revents) {
        if (!Drain(err_r.get(), [&](std::string_view c) { capture(Stream::kStderr, c); }))
          err_r.reset();
      }
      if (idx_st >= 0 && all[idx_st].revents) {
        bool open = Drain(st_r.get(), [&](std::string_view c) {
          size_t room = status_cap - std::min(status_cap, status_buf.size());
          status_buf.append(c.substr(0, std::min(room, c.size())));
        });
        if (!open) {
          st_r.reset();
          status_closed = true;
        }
      }
      if (idx_src >= 0 && all[idx_src].revents) {
        char buf[65536];
        ssize_t r = ::read(spec.stdin_fd, buf, sizeof buf);
        if (r > 0) {
          pump_buf.append(buf, static_cast<size_t>(r));
        } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
          pump_eof = true;
        }
      }
      if (idx_in >= 0 && all[idx_in].revents) {
        std::string_view src = !stdin_left.empty() ? stdin_left : std::string_view(pump_buf);
        ssize_t w = ::write(stdin_w.get(), src.data(), std::min<size_t>(src.size(), 65536));
        if (w > 0) {
          if (!stdin_left.empty()) {
            stdin_left.remove_prefix(static_cast<size_t>(w));
          } else {
            pump_buf.erase(0, static_cast<size_t>(w));
          }
        } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
          stdin_w.reset();  // EPIPE: the program closed its stdin
        }
      }
      deliver_frames();
      if (idx_sig >= 0 && all[idx_sig].revents) {
        unsigned char sigs[16];
        ssize_t r = ::read(spec.signal_fd, sigs, sizeof sigs);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) signals_open = false;
        for (ssize_t i = 0; i < r; ++i) {
          // Only what the init forwards: anything else would hit the init itself.
          const int sig = sigs[i];
          if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP || sig == SIGQUIT ||
              sig == SIGUSR1 || sig == SIGUSR2) {
            ::syscall(SYS_pidfd_send_signal, pid_fd.get(), sig, nullptr, 0);
          }
        }
      }
      if (idx_cancel >= 0 && all[idx_cancel].revents) kill_tree(Termination::kCancelled);
    }
    if (stdin_w.valid() && stdin_left.empty() && pump_buf.empty() && pump_eof) stdin_w.reset();

    now = Clock::now();
    if (now >= next_tick && !init_done) {
      next_tick = now + kTick;
      if (auto u = cg.Usage(); u) {
        cpu_ns = std::max(cpu_ns, u->cpu_ns - std::min(u->cpu_ns, cpu_base_ns));
        outcome.memory_peak_bytes = std::max(outcome.memory_peak_bytes, u->memory_peak_bytes);
        if (spec.on_usage) spec.on_usage(cpu_ns, outcome.memory_peak_bytes);
        if (u->oom_kills > 0 && !killed_for) kill_tree(Termination::kMemoryLimit);
        if (cpu_ns > static_cast<uint64_t>(lim.cpu_time.count()) * 1'000'000 && !killed_for) {
          kill_tree(Termination::kCpuTimeout);
        }
      }
    }
    if (!init_done && now >= deadline && !killed_for) kill_tree(Termination::kWallTimeout);
    // The run is over, and everything it wrote is in the pipes, once its init has reported and
    // closed the status channel, the bootstrap has said it ended, or we killed it. Its init's
    // exit (the kernel tearing down the program, namespaces and mounts) is not waited for.
    const bool reported = status_closed && status_buf.size() >= sizeof(InitReport);
    const bool said_end = end_bytes.size() == 2 && end_bytes[0] == 'E';
    if (!init_done && (reported || said_end || killed_for)) {
      if (!reported && said_end) {
        InitReport end;
        end.kind = InitReport::kExited;
        end.wait_status = static_cast<unsigned char>(end_bytes[1]) << 8;
        status_buf.assign(reinterpret_cast<const char*>(&end), sizeof end);
      }
      if (!killed_for) sigkill_tree();  // a kill already did
      drain_frames();                   // what is left in the pipes
      drain_streams();
      deliver_frames();
      break;
    }
  }
  const bool handed_over = !init_done;

  siginfo_t info{};
  if (!handed_over) {
    ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pid_fd.get()), &info, WEXITED);
    pid_fd.reset();  // reaped: the tree's destructor has nothing left to kill
  }
  outcome.wall = std::chrono::duration_cast<Millis>(Clock::now() - start);
  if (auto u = cg.Usage(); u) {
    cpu_ns = std::max(cpu_ns, u->cpu_ns - std::min(u->cpu_ns, cpu_base_ns));
    outcome.memory_peak_bytes = std::max(outcome.memory_peak_bytes, u->memory_peak_bytes);
    if (u->oom_kills > 0 && !killed_for) killed_for = Termination::kMemoryLimit;
  }
  outcome.cpu = Millis(cpu_ns / 1'000'000);
  if (handed_over) {
    graveyard_->Bury(std::move(pid_fd), tree.pid > 0, std::move(tree.cgroup));
  } else if (auto r = cg.Remove(); !r && outcome.setup_error.empty()) {
    outcome.setup_error = "cgroup cleanup: " + r.error().message();
  }

  // ---- verdict --------------------------------------------------------------------------
  InitReport report;
  bool have_report = status_buf.size() >= sizeof report;
  if (have_report) std::memcpy(&report, status_buf.data(), sizeof report);
  if (have_report && report.magic != InitReport::kMagic) have_report = false;
  // polyrun-exec could not become the program: its report, not its exit, is the run's.
  if (exec_report.size() == sizeof report) {
    InitReport stub;
    std::memcpy(&stub, exec_report.data(), sizeof stub);
    if (stub.magic == InitReport::kMagic &&
        (stub.kind == InitReport::kSetupFailed || stub.kind == InitReport::kExecFailed)) {
      report = stub;
      have_report = true;
    }
  }

  if (have_report && report.kind == InitReport::kExited) {
    size_t off = sizeof report;
    while (off + sizeof(ArtifactHeader) <= status_buf.size()) {
      ArtifactHeader h;
      std::memcpy(&h, status_buf.data() + off, sizeof h);
      off += sizeof h;
      if (off + h.name_len + h.size > status_buf.size()) break;
      std::string aname = status_buf.substr(off, h.name_len);
      off += h.name_len;
      outcome.artifacts[aname] = status_buf.substr(off, h.size);
      off += h.size;
    }
  }

  if (killed_for) {
    outcome.termination = *killed_for;
  } else if (!have_report) {
    outcome.termination = Termination::kSetupFailed;
    outcome.setup_error =
        "sandbox init ended without a report (exit status " + std::to_string(info.si_status) + ")";
  } else if (report.kind == InitReport::kSetupFailed || report.kind == InitReport::kExecFailed) {
    outcome.termination = report.kind == InitReport::kSetupFailed ? Termination::kSetupFailed
                                                                  : Termination::kExecFailed;
    outcome.setup_error = std::string(report.what, strnlen(report.what, sizeof report.what)) +
                          ": " + std::strerror(report.err);
  } else if (WIFEXITED(report.wait_status)) {
    outcome.termination = Termination::kExited;
    outcome.exit_code = WEXITSTATUS(report.wait_status);
  } else if (WIFSIGNALED(report.wait_status)) {
    outcome.signal = WTERMSIG(report.wait_status);
    outcome.termination =
        outcome.signal == SIGXCPU ? Termination::kCpuTimeout : Termination::kSignaled;
  }
  if (outcome.termination == Termination::kCpuTimeout && outcome.cpu < lim.cpu_time) {
    outcome.cpu = lim.cpu_time;
  }
  return outcome;
}

}  // namespace polyrun::sandbox
