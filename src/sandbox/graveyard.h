#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "sandbox/cgroup.h"
#include "util/error.h"
#include "util/unique_fd.h"

namespace polyrun::sandbox {

// Finishes the teardown of runs that have already been answered (DESIGN.md §6.5;
// docs/performance.md, "The end of a run"). A run's result is final once its program has ended and
// every process of it has been sent SIGKILL; what is left is the kernel's work: freeing their
// memory, the namespaces and mounts, and the reap of the init. That takes 0.3-4 ms a run (an
// interpreter's address space is most of it) and is nobody's business but the host's, so it is done
// here, on a thread of its own, while the answer is already on its way: wait for the init's end,
// then remove the cgroup, which kills whatever is left in it and waits until it is empty.
class Graveyard {
 public:
  Graveyard();
  ~Graveyard();  // finishes every burial first
  Graveyard(const Graveyard&) = delete;
  Graveyard& operator=(const Graveyard&) = delete;

  // Takes over a run whose processes have all been sent SIGKILL. `init` is its init's pidfd;
  // `reap` says whether it is a child of this process (waited for) or not (a zygote's run,
  // whose end is seen through the pidfd). Blocks while kMaxPending runs are still being torn
  // down: a host that answers faster than the kernel frees must not pile up dying trees.
  void Bury(UniqueFd init, bool reap, std::unique_ptr<Cgroup> cgroup);
  // Blocks until every run buried so far is gone: its init ended and reaped, its cgroup removed.
  // Returns the first cgroup removal that failed since the previous call.
  Result<void> Settle();
  // Cgroups that could not be removed, since the start (a leak the operator must hear of: the
  // server's metrics show it).
  uint64_t failures() const { return failures_.load(); }

  static constexpr size_t kMaxPending = 16;

 private:
  struct Grave {
    UniqueFd init;
    bool reap = false;
    std::unique_ptr<Cgroup> cgroup;
  };
  void Work();

  std::mutex mu_;
  std::condition_variable changed_;
  std::deque<Grave> graves_;
  size_t busy_ = 0;  // graves taken by the worker, not finished
  bool stopping_ = false;
  std::optional<Error> failure_;
  std::atomic<uint64_t> failures_{0};
  std::thread worker_;
};

}  // namespace polyrun::sandbox
