// Zygotes (docs/performance.md): per language with a [zygote], one fork server kept running by
// a keeper thread, which starts it, checks it and replaces it when it dies or a run reports it
// broken, and keeps kForkedAhead runs forked ahead of need in it (Sandbox::ForkAhead), forking
// another each time a run takes one. Runs are forked from it through Sandbox::RunInZygote.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "sandbox/sandbox.h"
#include "sandbox/zygote.h"

namespace polyrun::engine {

class Zygotes {
 public:
  struct Stats {
    bool ready = false;
    uint64_t runs = 0;          // forked by the current server
    uint64_t runs_ahead = 0;    // of those, runs that took a run forked ahead
    size_t ahead = 0;           // runs forked ahead, waiting
    uint64_t started = 0;       // servers started, replacements included
    uint64_t memory_bytes = 0;  // the current server's
    std::string last_error;     // why the last start, or fork ahead, failed
  };

  // Runs kept forked ahead per server: enough for a run and the next while one is refilled.
  static constexpr size_t kForkedAhead = 2;

  // `specs`: per language id, the sandbox of its fork server (argv, env, binds, limits).
  Zygotes(sandbox::Sandbox& sandbox, std::map<std::string, sandbox::SandboxSpec> specs);
  ~Zygotes();  // stops the keeper; servers end once no run uses them
  Zygotes(const Zygotes&) = delete;
  Zygotes& operator=(const Zygotes&) = delete;

  bool Serves(const std::string& language) const { return lanes_.contains(language); }
  // The language's live server, or null (not started yet, or failing to start).
  std::shared_ptr<sandbox::Zygote> Get(const std::string& language);
  // A run found `zygote` gone or broken (kUnavailable): it is replaced.
  void Broken(const std::string& language, const std::shared_ptr<sandbox::Zygote>& zygote);
  std::map<std::string, Stats> stats();

 private:
  using Clock = std::chrono::steady_clock;
  struct Lane {
    sandbox::SandboxSpec spec;
    std::shared_ptr<sandbox::Zygote> zygote;
    Clock::time_point retry_at;  // after a failed start
    Stats stats;
  };
  void Keep();
  // Forks runs ahead in `zygote` until it has kForkedAhead; the error of a failed fork, if any.
  std::string Refill(sandbox::Zygote& zygote);
  // Drops a server the lanes no longer hold. Called without mu_: its callback takes mu_.
  static void Release(std::shared_ptr<sandbox::Zygote> zygote);

  sandbox::Sandbox& sandbox_;
  std::map<std::string, Lane> lanes_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool refill_ = false;  // a run took a run forked ahead
  std::thread keeper_;   // starts every server: each dies with the thread that started it
};

}  // namespace polyrun::engine
