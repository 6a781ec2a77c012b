#include "sandbox/graveyard.h"

#include <poll.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <cerrno>

namespace polyrun::sandbox {

Graveyard::Graveyard() : worker_([this] { Work(); }) {}

Graveyard::~Graveyard() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  changed_.notify_all();
  worker_.join();
}

void Graveyard::Bury(UniqueFd init, bool reap, std::unique_ptr<Cgroup> cgroup) {
  std::unique_lock lock(mu_);
  changed_.wait(lock, [&] { return graves_.size() + busy_ < kMaxPending; });
  graves_.push_back({std::move(init), reap, std::move(cgroup)});
  changed_.notify_all();
}

Result<void> Graveyard::Settle() {
  std::unique_lock lock(mu_);
  changed_.wait(lock, [&] { return graves_.empty() && busy_ == 0; });
  if (!failure_) return {};
  Error e = std::move(*failure_);
  failure_.reset();
  return std::unexpected(std::move(e));
}

void Graveyard::Work() {
  std::unique_lock lock(mu_);
  for (;;) {
    changed_.wait(lock, [&] { return stopping_ || !graves_.empty(); });
    if (graves_.empty()) return;  // stopping, and every grave is done
    Grave grave = std::move(graves_.front());
    graves_.pop_front();
    ++busy_;
    lock.unlock();
    if (grave.init.valid()) {
      if (grave.reap) {
        siginfo_t info{};
        while (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(grave.init.get()), &info,
                        WEXITED) < 0 &&
               errno == EINTR) {
        }
      } else {
        // Not our child: its pidfd turns readable when it has ended.
        pollfd p{grave.init.get(), POLLIN, 0};
        while (::poll(&p, 1, -1) < 0 && errno == EINTR) {
        }
      }
    }
    Result<void> removed = grave.cgroup ? grave.cgroup->Remove() : Result<void>{};
    grave = {};
    lock.lock();
    if (!removed) {
      failures_.fetch_add(1);
      if (!failure_) failure_ = removed.error();
    }
    --busy_;
    changed_.notify_all();
  }
}

}  // namespace polyrun::sandbox
