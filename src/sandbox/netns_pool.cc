#include "sandbox/netns_pool.h"

#include <fcntl.h>
#include <sched.h>

#include <chrono>
#include <cstdlib>

#include "sandbox/loopback.h"

namespace polyrun::sandbox {

Result<std::unique_ptr<NetnsPool>> NetnsPool::Create(size_t ready) {
  // The thread's own namespace, not /proc/self's: the main thread may have moved (it has not,
  // but a namespace is a per-thread attribute and this is the one we return to).
  UniqueFd host(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (!host.valid()) return SysFail("open", "/proc/thread-self/ns/net");
  std::unique_ptr<NetnsPool> pool(new NetnsPool(std::move(host), ready));
  // One made here proves we may (and gives the first run one).
  auto first = pool->Make();
  if (!first) return std::unexpected(first.error());
  pool->waiting_.push_back(std::move(*first));
  if (ready > 0) pool->thread_ = std::thread([p = pool.get()] { p->Refill(); });
  return pool;
}

NetnsPool::~NetnsPool() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Result<UniqueFd> NetnsPool::Take() {
  {
    std::lock_guard lock(mu_);
    if (!waiting_.empty()) {
      UniqueFd ns = std::move(waiting_.front());
      waiting_.pop_front();
      wake_.notify_all();
      return ns;
    }
  }
  wake_.notify_all();
  return Make();
}

void NetnsPool::Refill() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    if (waiting_.size() >= ready_) {
      wake_.wait(lock);
      continue;
    }
    lock.unlock();
    auto ns = Make();
    lock.lock();
    if (ns) {
      waiting_.push_back(std::move(*ns));
    } else {
      // Out of memory or over a namespace limit: Take meets and reports the same failure;
      // this thread retries later rather than spin on it.
      wake_.wait_for(lock, std::chrono::seconds(1));
    }
  }
}

Result<UniqueFd> NetnsPool::Make() const {
  // unshare(CLONE_NEWNET) moves only the calling thread, which is what lets a server thread
  // (or this pool's) make one without touching any other thread's network.
  if (::unshare(CLONE_NEWNET) != 0) return SysFail("unshare", "CLONE_NEWNET for a sandbox");
  auto entered = std::unique_ptr<Entered>(new Entered(host_.get()));
  UniqueFd ns(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (!ns.valid()) return SysFail("open", "/proc/thread-self/ns/net of a new namespace");
  const char* call = nullptr;
  if (int err = BringUpLoopback(&call); err != 0) return SysFail(call, "sandbox loopback", err);
  return ns;
}

Result<std::unique_ptr<NetnsPool::Entered>> NetnsPool::Enter(int netns) const {
  if (::setns(netns, CLONE_NEWNET) != 0) return SysFail("setns", "a sandbox's network namespace");
  return std::unique_ptr<Entered>(new Entered(host_.get()));
}

NetnsPool::Entered::~Entered() {
  if (::setns(host_, CLONE_NEWNET) != 0) std::abort();
}

}  // namespace polyrun::sandbox
