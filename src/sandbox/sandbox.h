#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>

#include "sandbox/cgroup.h"
#include "sandbox/spec.h"
#include "util/error.h"

namespace polyrun::sandbox {

struct SandboxConfig {
  std::shared_ptr<CgroupManager> cgroups;  // required: runs are refused without cgroups
  // Host ids the sandbox's single inner uid/gid (1000) maps to. As root, defaults to
  // nobody/nogroup; as an unprivileged user, to the caller's own ids.
  uid_t host_uid = static_cast<uid_t>(-1);
  gid_t host_gid = static_cast<gid_t>(-1);
  // Where the sandbox's root tmpfs may be staged inside the new mount namespace (not visible
  // on the host): per run, the first of these directories that holds no bind source (a checkout
  // under /tmp must still be bindable). Those missing on the host are dropped by Create.
  std::vector<std::string> staging_dirs = {"/tmp", "/mnt", "/srv", "/media"};
  // Empty network namespaces kept made ahead of runs (NetnsPool::Create); 0 keeps none ahead:
  // each run's is made when the run starts, still by this process, so that it belongs to the
  // host's user namespace as the pool's do. Needs root: without it, each run's is made with
  // the run, in the run's own user namespace, whatever this says.
  size_t netns_ready = 4;
};

struct StartedTree;
class NetnsPool;
class Graveyard;
class Zygote;

// A tree built and started ahead of its run (a warm pool's entry): namespaces, root, cgroup,
// seccomp and the program are in place, the program typically blocked reading its stdin, and
// nothing supervises it until Sandbox::Claim. Used for exactly one run. Destroying one that was
// never claimed kills its tree and removes its cgroup.
class PreparedSandbox {
 public:
  PreparedSandbox(PreparedSandbox&&) noexcept;
  PreparedSandbox& operator=(PreparedSandbox&&) noexcept;
  ~PreparedSandbox();

  // Waits until the program writes the byte 'R' on fd 3 (the spec's frames channel): its
  // interpreter is loaded and it waits for its run. kTimeout when it
  // did not within `timeout`; kInternalError when it ended or wrote anything else.
  Result<void> WaitReady(std::chrono::milliseconds timeout);
  // Alive and silent (nothing on fds 1 and 2) since it was started; checked right before a claim.
  bool Healthy() const;
  // The tree's memory peak so far (its cgroup's): what keeping it ready costs.
  uint64_t MemoryPeakBytes() const;

 private:
  friend class Sandbox;
  explicit PreparedSandbox(std::unique_ptr<StartedTree> tree);
  std::unique_ptr<StartedTree> tree_;
};

// Runs process trees under every guarantee of DESIGN.md §6. Thread-safe: Run() may be called
// from many threads at once; each call owns its own namespaces and cgroup.
class Sandbox {
 public:
  ~Sandbox();
  // Also sets SIGPIPE to ignored in this process, unless it has a handler: a program that ends
  // without reading its input must not end the host writing it (writes see EPIPE instead).
  static Result<std::unique_ptr<Sandbox>> Create(SandboxConfig config);

  // Blocks until the run is over: its program ended (or was killed), everything it wrote was
  // read, and every process of the tree has been sent SIGKILL, so none runs again. The kernel's
  // teardown of the tree and the removal of its cgroup finish in the background (Settle). An
  // error means the host side failed (the run did not happen, or its limits could not be
  // guaranteed); anything the program did is an outcome.
  Result<SandboxOutcome> Run(const SandboxSpec& spec);
  // Blocks until every run that has returned is gone: its processes ended and reaped, its
  // cgroup removed. An error names the first cgroup that could not be removed since the last
  // call.
  Result<void> Settle();
  // Run cgroups that could not be removed after their run, since the start.
  uint64_t TeardownFailures() const;

  // Run in two steps, for warm pools. Prepare builds the tree from `spec`'s argv, env, binds,
  // files, collect, extra_syscalls, frames_channel and limits (memory, processes, rlimits, tmpfs
  // sizes, and wall_time as the bound on the whole tree's life) and returns once the program
  // started; its stdin stays open. Claim then supervises it as one run with `run`'s stdin,
  // on_output, cancel_fd, retain_output, signal_fd, on_usage and its wall, CPU and output limits,
  // all counted from the claim (CPU used before it is not the run's); the program's RLIMIT_CPU is
  // lowered to the run's CPU limit there too. `run`'s tree-building
  // fields are ignored: the tree is what Prepare built. After the 'R', fd 3 is the bootstrap's
  // way to end the run before its own exit: "E" and the exit code (one byte), written once the
  // program's output is flushed. Anything else there is ignored, and the init reports the end.
  Result<PreparedSandbox> Prepare(const SandboxSpec& spec);
  Result<SandboxOutcome> Claim(PreparedSandbox prepared, const SandboxSpec& run);

  // Prebuilt sandboxes (docs/performance.md): a tree built ahead of its run with nothing of the
  // run in it, its program polyrun-exec (exec_stub.h) waiting for the run's program. Prebuild
  // builds `spec`'s binds, extra_syscalls and limits as Prepare does; its argv, env, files and
  // collect are ignored. RunPrebuilt then writes the run's files into /work and executes the
  // run's argv with the run's env, supervised as Claim supervises a warm run (clocks from the
  // call, RLIMIT_CPU lowered to the run's): from the program's execve on, it is the run of a
  // tree built for it. The run's memory and process limits are set on the tree's cgroup before
  // its program starts; its other tree-building limits (rlimits, tmpfs sizes) must be those of
  // `spec` (the caller's contract, as for Claim). kInvalidArgument for a prepared sandbox that
  // is not prebuilt, and for a run PrebuiltServes refuses.
  Result<PreparedSandbox> Prebuild(const SandboxSpec& spec);
  Result<SandboxOutcome> RunPrebuilt(PreparedSandbox prepared, const SandboxSpec& run);
  // Whether a prebuilt sandbox can serve `run`, the one rule for RunPrebuilt and its callers:
  // kInvalidArgument, naming the field, for a frames channel, anything to collect, an argv[0]
  // that is not absolute, a file name that is not relative, or a file larger than the run's
  // file-size limit (polyrun-exec writes the files under it; a cold init, before it is set).
  static Result<void> PrebuiltServes(const SandboxSpec& run);

  // Zygotes (zygote.h). StartZygote builds `spec`'s tree as Prepare does, with its program as a
  // fork server (ChildPlan::fork_server; fd 3 is its control socket), hands it the seccomp
  // profile its runs load (the default one plus spec.extra_syscalls) and waits up to
  // `ready_timeout` for its b"R". Like every tree, it dies with the thread that started it:
  // start zygotes from a thread that lives as long as they should.
  Result<std::unique_ptr<Zygote>> StartZygote(const SandboxSpec& spec,
                                              std::chrono::milliseconds ready_timeout);
  // One run forked from `zygote`, supervised as Run() would: `run`'s stdin, clocks, output caps
  // and callbacks, and every limit of its own (cgroup, tmpfs sizes, rlimits up to the
  // zygote's). Its argv, env, binds, files and syscalls are the zygote's: the program reads
  // what to run from its stdin. kUnavailable: the zygote is gone or broken (run elsewhere);
  // kInvalidArgument: the run needs more than the zygote may give (collect, higher rlimits).
  // A run whose work and tmp sizes are the zygote's own takes a run forked ahead, if one is
  // waiting: only its cgroup and its program are made on its critical path.
  Result<SandboxOutcome> RunInZygote(Zygote& zygote, const SandboxSpec& run);
  // Forks one run ahead of need in `zygote` (its default work and tmp sizes) and waits, up to
  // `timeout`, until its init is up. kUnavailable: the zygote is gone or broken.
  Result<void> ForkAhead(Zygote& zygote, std::chrono::milliseconds timeout);

  const SandboxConfig& config() const { return config_; }

 private:
  explicit Sandbox(SandboxConfig config);
  Result<PreparedSandbox> Prepare(const SandboxSpec& spec, bool keep_stdin,
                                  bool fork_server = false);
  // What the program's fd 3 carries once the run is supervised.
  enum class FdThree {
    kFrames,        // the run's frames (spec.on_frames), if it has the channel
    kBootstrapEnd,  // a warm bootstrap's end: "E" and the exit code
    kExecReport,    // polyrun-exec's InitReport, if it could not become the program
  };
  // Supervises a started tree as one run until it is over (docs/performance.md, "The end of a
  // run"): its init has reported and closed the status channel, or (kBootstrapEnd) the
  // program said on fd 3 that it ended, or it was killed. Then every process of it is sent
  // SIGKILL, the pipes are drained, and the rest of the teardown goes to the graveyard.
  // `stdin_data` is written to the program's stdin (spec.stdin_data, or RunPrebuilt's request
  // with it) before spec.stdin_fd is pumped; it must outlive the call.
  Result<SandboxOutcome> Supervise(StartedTree& tree, const SandboxSpec& spec,
                                   std::chrono::steady_clock::time_point start,
                                   uint64_t cpu_base_ns, FdThree fd3, std::string_view stdin_data);
  // Claim's and RunPrebuilt's common part: clocks and the CPU rlimit from now on.
  Result<SandboxOutcome> SuperviseClaimed(StartedTree& tree, const SandboxSpec& run, FdThree fd3,
                                          std::string_view stdin_data);
  SandboxConfig config_;
  std::unique_ptr<NetnsPool> netns_;  // null: each run's namespace is made with it
  // Last, so it is destroyed first: it finishes every run's teardown before the rest goes.
  std::unique_ptr<Graveyard> graveyard_;
};

// Validates a /work-relative file name from a request: non-empty, relative, no "." or ".."
// components, no NUL, at most 255 bytes per component and 4096 in total.
Result<void> ValidateRelativePath(const std::string& name);

}  // namespace polyrun::sandbox
