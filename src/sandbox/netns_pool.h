#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>

#include "util/error.h"
#include "util/unique_fd.h"

namespace polyrun::sandbox {

// Empty network namespaces made ahead of need, so that a run does not pay for one on its
// critical path (creating one costs ~0.7 ms and has a multi-millisecond tail, the largest part
// of a cold start's isolation cost). Each namespace has only its loopback interface, up, and is
// handed out exactly once: two runs never share one.
//
// The namespaces belong to the host's user namespace, not to a sandbox's, so nothing inside a
// sandbox holds any capability over them: a program can use its loopback but never configure
// it. Making them needs CAP_SYS_ADMIN there (root); Create fails otherwise and the sandbox
// creates its namespaces with the run instead.
class NetnsPool {
 public:
  // Makes one namespace now (the first run's), then starts a thread that keeps `ready` waiting.
  // With `ready` 0 there is no thread: a process that starts one run makes only that run's, and
  // a later Take makes its own on the spot.
  static Result<std::unique_ptr<NetnsPool>> Create(size_t ready);
  NetnsPool(const NetnsPool&) = delete;
  NetnsPool& operator=(const NetnsPool&) = delete;
  ~NetnsPool();

  // A namespace no process has entered yet, as an fd for setns(2); made on the spot when none is
  // waiting.
  Result<UniqueFd> Take();

  // Moves the calling thread into the namespace `netns` (another thread's view is unchanged)
  // until destroyed, which moves it back to the host's. Processes the thread creates meanwhile
  // without CLONE_NEWNET are born in `netns`. Aborts if the thread cannot return: it would go
  // on serving with a sandbox's network.
  class Entered {
   public:
    Entered(const Entered&) = delete;
    Entered& operator=(const Entered&) = delete;
    ~Entered();

   private:
    friend class NetnsPool;
    explicit Entered(int host) : host_(host) {}
    int host_;
  };
  Result<std::unique_ptr<Entered>> Enter(int netns) const;

 private:
  NetnsPool(UniqueFd host, size_t ready) : host_(std::move(host)), ready_(ready) {}
  // Makes one on the calling thread, which ends where it started: in the host's namespace.
  Result<UniqueFd> Make() const;
  void Refill();

  UniqueFd host_;  // the host's network namespace, to return to
  const size_t ready_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<UniqueFd> waiting_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace polyrun::sandbox
