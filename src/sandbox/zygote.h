// Zygotes (docs/performance.md): a fork server per language, holding an initialised interpreter
// in a sandbox of its own, which forks one child per run. Each child gets its own cgroup with
// the run's limits, its own mount, PID, IPC, UTS and network namespaces, fresh /work, /tmp and
// /dev/shm, the run's rlimits, no capability and the default seccomp profile: what a cold run
// gets, without starting an interpreter. The server itself never runs user code and never holds
// a run's data (only its descriptors and limits pass through it). A few runs are forked ahead
// of need, up to their init; a run that finds one only joins its cgroup and forks its program.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>

#include "sandbox/sandbox.h"
#include "util/unique_fd.h"

namespace polyrun::sandbox {

class Zygote {
 public:
  ~Zygote();  // ends the server and everything it forked that still runs
  Zygote(const Zygote&) = delete;
  Zygote& operator=(const Zygote&) = delete;

  // The server is alive and has been silent on its stdout and stderr.
  bool Alive() const;
  // The server's memory (its cgroup's peak): what keeping it costs.
  uint64_t MemoryPeakBytes() const;
  uint64_t runs() const { return runs_.load(); }
  // Of those, the runs that took a run forked ahead.
  uint64_t runs_ahead() const { return runs_ahead_.load(); }
  // Whether a run with these limits can be forked from it: a process can lower its rlimits,
  // never raise them, so file size, open files and stack must be within the server's own.
  bool CanServe(const SandboxLimits& run) const;

  // Runs forked ahead of need (Sandbox::ForkAhead) waiting for a run.
  size_t ahead() const;
  // Called (from the run's thread) each time a run takes one of them, or finds one dead: time to
  // fork another.
  // Set before the zygote is shared; cleared, under the same lock, before the caller goes away.
  void OnAheadTaken(std::function<void()> callback);

 private:
  friend class Sandbox;
  // A run forked ahead: namespaces, tmpfs and its init (G) in place, waiting until the host
  // sends the server the run's rlimits and cgroup files ({"go": id}), for which the server
  // forks the program into them. Holds nothing of any run.
  struct Ahead {
    uint64_t id = 0;  // the server's name for it
    UniqueFd pid_fd;  // G's
    UniqueFd stdin_w, out_r, err_r;
    UniqueFd status;  // SOCK_SEQPACKET: G's pidfd came on it, the server's report of the run will
  };
  Zygote(PreparedSandbox tree, UniqueFd control, SandboxLimits limits);
  // A healthy one (alive, silent), if any; unhealthy ones met on the way are dropped.
  std::optional<Ahead> TakeAhead();
  // Kills a run forked ahead that will not be used (its init's pidfd, if known) and tells the
  // server to forget it.
  void Drop(uint64_t id, int pid_fd);

  PreparedSandbox tree_;
  UniqueFd control_;  // SOCK_SEQPACKET to the server's fd 3
  SandboxLimits limits_;
  std::mutex send_mu_;
  std::atomic<uint64_t> runs_{0};
  std::atomic<uint64_t> runs_ahead_{0};
  std::atomic<uint64_t> next_ahead_id_{0};
  mutable std::mutex ahead_mu_;
  std::deque<Ahead> ahead_;
  std::function<void()> on_ahead_taken_;
};

}  // namespace polyrun::sandbox
