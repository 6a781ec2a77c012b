#include "engine/zygotes.h"

#include <utility>
#include <vector>

namespace polyrun::engine {

namespace {
constexpr std::chrono::seconds kStartTimeout{20};
constexpr std::chrono::seconds kRetryAfter{5};
constexpr std::chrono::seconds kCheckEvery{1};
constexpr std::chrono::seconds kAheadTimeout{5};
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
  std::shared_ptr<sandbox::Zygote> dropped;
  {
    std::lock_guard lock(mu_);
    auto it = lanes_.find(language);
    if (it == lanes_.end() || it->second.zygote != zygote) return;  // already replaced
    dropped = std::move(it->second.zygote);
  }
  Release(std::move(dropped));
  cv_.notify_all();
}

void Zygotes::Release(std::shared_ptr<sandbox::Zygote> zygote) {
  if (zygote) zygote->OnAheadTaken(nullptr);  // runs may keep it; they must not call us back
  zygote.reset();  // if this was the last reference, the server ends here, unlocked
}

std::string Zygotes::Refill(sandbox::Zygote& zygote) {
  while (zygote.ahead() < kForkedAhead) {
    if (auto r = sandbox_.ForkAhead(zygote, kAheadTimeout); !r) return r.error().message();
  }
  return {};
}

std::map<std::string, Zygotes::Stats> Zygotes::stats() {
  std::map<std::string, std::pair<Stats, std::shared_ptr<sandbox::Zygote>>> lanes;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, lane] : lanes_) lanes[id] = {lane.stats, lane.zygote};
  }
  // Asked unlocked: a zygote's own lock is taken before ours when a run takes from it.
  std::map<std::string, Stats> out;
  for (auto& [id, lane] : lanes) {
    auto& [s, zygote] = lane;
    s.ready = zygote != nullptr;
    if (zygote) {
      s.runs = zygote->runs();
      s.runs_ahead = zygote->runs_ahead();
      s.ahead = zygote->ahead();
      s.memory_bytes = zygote->MemoryPeakBytes();
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
        Release(std::move(dead));
        lock.lock();
        continue;
      }
      const sandbox::SandboxSpec spec = lane.spec;
      lock.unlock();
      Release(std::move(dead));
      auto started = sandbox_.StartZygote(spec, kStartTimeout);
      if (started) {
        (*started)->OnAheadTaken([this] {
          {
            std::lock_guard kick(mu_);
            refill_ = true;
          }
          cv_.notify_all();
        });
      }
      lock.lock();
      ++lane.stats.started;
      if (started) {
        lane.zygote = std::move(*started);
      } else {
        lane.stats.last_error = started.error().message();
        lane.retry_at = Clock::now() + kRetryAfter;
      }
    }
    for (auto& [id, lane] : lanes_) {
      if (stop_) break;
      std::shared_ptr<sandbox::Zygote> zygote = lane.zygote;
      if (!zygote) continue;
      lock.unlock();
      std::string failed = Refill(*zygote);
      lock.lock();
      if (!failed.empty()) lane.stats.last_error = failed;  // tried again at the next check
    }
    cv_.wait_for(lock, kCheckEvery, [this] { return stop_ || refill_; });
    refill_ = false;
  }
  std::vector<std::shared_ptr<sandbox::Zygote>> kept;
  kept.reserve(lanes_.size());
  for (auto& [id, lane] : lanes_) kept.push_back(std::move(lane.zygote));
  lock.unlock();
  for (auto& zygote : kept) Release(std::move(zygote));
}

}  // namespace polyrun::engine
