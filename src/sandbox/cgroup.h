#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "util/error.h"

namespace polyrun::sandbox {

struct CgroupLimits {
  uint64_t memory_bytes = 0;
  uint64_t pids = 0;
};

struct CgroupUsage {
  uint64_t cpu_ns = 0;
  uint64_t memory_peak_bytes = 0;
  uint64_t oom_kills = 0;
};

// One run's cgroup (one directory per hierarchy on v1, one directory on v2). Created with its
// limits applied and read back (SetLimits); removed by Remove() or, best effort, by the
// destructor.
class Cgroup {
 public:
  virtual ~Cgroup() = default;
  // Moves `pid` (a process we just cloned, still waiting for our go) into the cgroup.
  virtual Result<void> AddProcess(pid_t pid) = 0;
  // A directory fd for clone3(CLONE_INTO_CGROUP), or -1 when processes must be moved in with
  // AddProcess() (cgroup v1). Owned by the Cgroup.
  virtual int CloneIntoFd() const { return -1; }
  // Control files the new process writes "0" to, to join the cgroup itself before it drops
  // host privileges (cgroup v1). A thread moving itself skips the global threadgroup lock,
  // whose write side costs an RCU grace period (often 5-20 ms) per run when a supervisor
  // moves it. Empty: use CloneIntoFd() or AddProcess().
  virtual std::vector<std::string> SelfJoinFiles() const { return {}; }
  // Control files through which a process moves itself in by writing "0", also through a
  // descriptor the host opened for it (a zygote's run, docs/performance.md): v1's tasks files
  // (they move the writing thread, which skips the threadgroup lock), v2's cgroup.procs.
  virtual std::vector<std::string> SelfMoveFiles() const = 0;
  // Sets the memory and process limits, each written then read back: an error names the control
  // file that did not take. Raising and lowering are both allowed. A limit below what the cgroup
  // holds at the time makes the kernel reclaim (memory) or refuse new tasks (pids): the caller
  // sets limits on a cgroup that holds little.
  virtual Result<void> SetLimits(const CgroupLimits& limits) = 0;
  // Cheap enough to call every few milliseconds while a run is live.
  virtual Result<CgroupUsage> Usage() = 0;
  // Sends SIGKILL to every process in the cgroup. The PID-namespace init's death is the primary
  // mechanism; this is the second fence.
  virtual void KillAll() = 0;
  virtual bool Empty() = 0;
  // Kills what is left, waits (bounded) until empty and removes the directories.
  virtual Result<void> Remove() = 0;
};

// The host's cgroup implementation, chosen once at start-up (DetectCgroups) and shared.
class CgroupManager {
 public:
  virtual ~CgroupManager() = default;
  // A new cgroup named `name`; kConflict when one of that name exists (it is never reused).
  // Limits are written then read back, and an error naming the control file is returned if any
  // limit did not take.
  virtual Result<std::unique_ptr<Cgroup>> Create(const std::string& name,
                                                 const CgroupLimits& limits) = 0;
  // A run's cgroup, named "run-<pid>-<n>" (unique among this process's runs, also across
  // managers). A name that exists, left by an earlier process with this pid that died without
  // removing it, is skipped for the next one.
  Result<std::unique_ptr<Cgroup>> CreateRun(const CgroupLimits& limits);
  // One line for `polyrun doctor`: version and the directories used.
  virtual std::string Describe() const = 0;
};

// cgroup v1: one directory per controller. `memory`, `pids` and `cpuacct` are the parent
// directories (ours to create children in). Both makers remove the empty run cgroups that ended
// processes left there (cgroup_common.h, SweepDeadRuns).
Result<std::unique_ptr<CgroupManager>> MakeCgroupV1(const std::string& memory,
                                                    const std::string& pids,
                                                    const std::string& cpuacct);
// cgroup v2: `parent` is a directory whose cgroup.subtree_control enables memory and pids
// (MakeCgroupV2 enables them).
Result<std::unique_ptr<CgroupManager>> MakeCgroupV2(const std::string& parent);

// Reads /proc/self/mountinfo and /proc/self/cgroup and picks v2 when the unified hierarchy
// has the memory and pids controllers, else v1 when memory, pids and cpuacct hierarchies are
// mounted. Our runs live below the cgroup polyrun itself is in, in a `polyrun` child, so a
// supervisor's limits on polyrun keep applying to every run. `root_override` (config) replaces
// that parent directory on v2.
Result<std::unique_ptr<CgroupManager>> DetectCgroups(const std::string& root_override = "");

// Parsing helpers, exposed for tests.
uint64_t ParseKeyedValue(const std::string& text, const std::string& key);  // "key N" lines
std::string CgroupPathFor(const std::string& proc_self_cgroup, const std::string& controller);

}  // namespace polyrun::sandbox
