#include "engine/zygotes.h"

namespace polyrun::engine {

namespace {
constexpr std::chrono::seconds kStartTimeout{20};
constexpr std::chrono::seconds kRetryAfter{5};
constexpr std::chrono::seconds kCheckEvery{1};
}  // namespace

Zygotes::Zygotes(sandbox::Sandbox& sandbox, std::map<std::string, sandbox::SandboxSpec> specs)
    : sandbox_(sandbox) {
  for (auto& [id, spec] : specs) lanes_[id].spec = std::move(spec);
  keeper_ = std::thread([this] { Keep(); });
}

Zygotes::~Zygotes() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  keeper_.join();
}

std::shared_ptr<sandbox::Zygote> Zygotes::Get(const std::string& language) {
  std::lock_guard lock(mu_);
  auto it = lanes_.find(language);
  if (it == lanes_.end()) return nullptr;
  return it->second.zygote;
}

void Zygotes::Broken(const std::string& language, const std::shared_ptr<sandbox::Zygote>& zygote) {
  {
    std::lock_guard lock(mu_);
    auto it = lanes_.find(language);
    if (it == lanes_.end() || it->second.zygote != zygote) return;  // already replaced
    it->second.zygote.reset();
  }
  cv_.notify_all();
}

std::map<std::string, Zygotes::Stats> Zygotes::stats() {
  std::lock_guard lock(mu_);
  std::map<std::string, Stats> out;
  for (auto& [id, lane] : lanes_) {
    Stats s = lane.stats;
    s.ready = lane.zygote != nullptr;
    if (lane.zygote) {
      s.runs = lane.zygote->runs();
      s.memory_bytes = lane.zygote->MemoryPeakBytes();
    }
    out[id] = s;
  }
  return out;
}

void Zygotes::Keep() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    const auto now = Clock::now();
    for (auto& [id, lane] : lanes_) {
      if (stop_) break;
      if (lane.zygote && lane.zygote->Alive()) continue;
      // Runs still using a dead one keep it until they are done; the last reference, if it is
      // ours, is dropped unlocked: ending a server (kill, reap, cgroup removal) takes a while,
      // and every run's Get() takes this lock.
      std::shared_ptr<sandbox::Zygote> dead = std::move(lane.zygote);
      if (now < lane.retry_at) {
        lock.unlock();
        dead.reset();
        lock.lock();
        continue;
      }
      const sandbox::SandboxSpec spec = lane.spec;
      lock.unlock();
      dead.reset();
      auto started = sandbox_.StartZygote(spec, kStartTimeout);
      lock.lock();
      ++lane.stats.started;
      if (started) {
        lane.zygote = std::move(*started);
      } else {
        lane.stats.last_error = started.error().message();
        lane.retry_at = Clock::now() + kRetryAfter;
      }
    }
    cv_.wait_for(lock, kCheckEvery);
  }
  for (auto& [id, lane] : lanes_) lane.zygote.reset();
}

}  // namespace polyrun::engine
