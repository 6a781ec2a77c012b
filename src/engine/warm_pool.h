// Warm pools (docs/performance.md): per language, sandboxes started ahead of need, each holding
// the language's warm bootstrap with its interpreter loaded and nothing of any user inside.
// A run takes one and it is never used again; a background thread refills the pools.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "sandbox/sandbox.h"

namespace polyrun::engine {

class WarmPool {
 public:
  struct Options {
    // A language's pool grows by one each time a run finds it empty (or takes its last entry),
    // up to this, and shrinks by one after `shrink_after` without a run of the language.
    size_t max_per_language = 2;
    // The waiting sandboxes' memory together (each counted at its measured peak) stays below.
    uint64_t memory_budget = 1ull << 30;
    std::chrono::milliseconds ready_timeout{20000};  // a bootstrap slower than this is dropped
    std::chrono::milliseconds shrink_after{60000};
    std::chrono::milliseconds max_age{600000};  // older entries are replaced
    // Languages whose runs have another fast path (a zygote), with a quiet period: their pool
    // is refilled only once no run has asked it for a sandbox for that long (at the start, at
    // once). Under sustained demand the other path serves, and the refill's interpreter starts
    // do not take the CPU from it; a run that comes after a pause finds a sandbox ready.
    std::map<std::string, std::chrono::milliseconds> refill_when_quiet;
    // A take that empties a lane refills it once the runs on its sandboxes have ended, or this
    // long after the take if they go on. A refill (an interpreter's start: 25-30 ms of CPU for
    // Python, more for others) started at the take took a core from the run that took the
    // sandbox; a next sandbox ready that much sooner rarely serves anyone, as the refill takes
    // longer than the grace. (A lane with sandboxes left waits for the runs' end, however long.)
    std::chrono::milliseconds empty_refill_grace{10};
    // The entries are prebuilt sandboxes (Sandbox::Prebuild): each spec's tree, waiting for a
    // run's program, not a bootstrap. Their runs go through Sandbox::RunPrebuilt.
    bool prebuilt = false;
  };
  struct Stats {
    size_t ready = 0;           // waiting now
    size_t target = 0;          // what the filler keeps ready
    uint64_t taken = 0;         // runs served warm
    uint64_t missed = 0;        // runs that found the pool empty (they ran cold)
    uint64_t dropped = 0;       // entries destroyed unused: unhealthy, too old, shrinking
    uint64_t failed = 0;        // bootstraps that did not get ready
    uint64_t memory_bytes = 0;  // of the waiting entries
    std::string last_error;     // why the last bootstrap did not get ready
  };

  // `specs`: per language id, the sandbox of its warm bootstrap (argv, env, binds, limits).
  WarmPool(sandbox::Sandbox& sandbox, std::map<std::string, sandbox::SandboxSpec> specs,
           Options options);
  ~WarmPool();  // stops the filler; waiting entries are destroyed
  WarmPool(const WarmPool&) = delete;
  WarmPool& operator=(const WarmPool&) = delete;

  bool Serves(const std::string& language) const { return lanes_.contains(language); }
  // The tree-building limits of the language's warm sandboxes (as the spec was given).
  const sandbox::SandboxSpec* SpecOf(const std::string& language) const;
  // A healthy ready sandbox of the language, or nullopt (the caller runs cold). The caller
  // calls RunEnded once the run on a sandbox it got has ended.
  std::optional<sandbox::PreparedSandbox> Take(const std::string& language);
  // A lane that still has a sandbox ready refills only once no run on its sandboxes is going
  // on: a refill (an interpreter's start, tens of ms of CPU) beside the run that took the
  // sandbox slowed that run on two cores (docs/performance.md, "Warm pools"). An empty lane
  // refills at once.
  void RunEnded(const std::string& language);
  std::map<std::string, Stats> stats();

 private:
  using Clock = std::chrono::steady_clock;
  struct Entry {
    sandbox::PreparedSandbox box;
    Clock::time_point born;
    uint64_t memory_bytes;
  };
  struct Lane {
    sandbox::SandboxSpec spec;
    std::deque<Entry> ready;  // oldest first
    size_t target = 1;
    Clock::time_point last_take;
    Clock::time_point retry_at;          // after a failed bootstrap
    std::chrono::milliseconds quiet{0};  // Options::refill_when_quiet
    size_t running = 0;                  // runs on sandboxes taken from here, not yet ended
    uint64_t entry_bytes = 0;            // the last measured entry's memory: the budget's estimate
    Stats stats;
  };

  void Fill();
  // Under mu_: the lane that most needs an entry and fits the budget, or null; `wake` is
  // lowered to when a lane waiting out its quiet period will need one.
  Lane* Neediest(Clock::time_point now, Clock::time_point& wake);
  uint64_t MemoryLocked() const;

  sandbox::Sandbox& sandbox_;
  const Options options_;
  std::map<std::string, Lane> lanes_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread filler_;
};

}  // namespace polyrun::engine
