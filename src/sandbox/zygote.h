// Zygotes (docs/performance.md): a fork server per language, holding an initialised interpreter
// in a sandbox of its own, which forks one child per run. Each child gets its own cgroup with
// the run's limits, its own mount, PID, IPC, UTS and network namespaces, fresh /work, /tmp and
// /dev/shm, the run's rlimits, no capability and the default seccomp profile: what a cold run
// gets, without starting an interpreter. The server itself never runs user code and never holds
// a run's data (only its descriptors and limits pass through it).
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>

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
  // Whether a run with these limits can be forked from it: a process can lower its rlimits,
  // never raise them, so file size, open files and stack must be within the server's own.
  bool CanServe(const SandboxLimits& run) const;

 private:
  friend class Sandbox;
  Zygote(PreparedSandbox tree, UniqueFd control, SandboxLimits limits);
  PreparedSandbox tree_;
  UniqueFd control_;  // SOCK_SEQPACKET to the server's fd 3
  SandboxLimits limits_;
  std::mutex send_mu_;
  std::atomic<uint64_t> runs_{0};
};

}  // namespace polyrun::sandbox
