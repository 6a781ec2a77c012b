#include "engine/warm_pool.h"

#include <algorithm>
#include <utility>
#include <vector>

namespace polyrun::engine {

WarmPool::WarmPool(sandbox::Sandbox& sandbox, std::map<std::string, sandbox::SandboxSpec> specs,
                   Options options)
    : sandbox_(sandbox), options_(std::move(options)) {
  const auto now = Clock::now();
  for (auto& [id, spec] : specs) {
    Lane& lane = lanes_[id];
    lane.spec = std::move(spec);
    lane.last_take = now;
    lane.target = std::min<size_t>(1, options_.max_per_language);
    if (auto q = options_.refill_when_quiet.find(id); q != options_.refill_when_quiet.end()) {
      lane.quiet = q->second;
    }
  }
  filler_ = std::thread([this] { Fill(); });
}

WarmPool::~WarmPool() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  filler_.join();
}

const sandbox::SandboxSpec* WarmPool::SpecOf(const std::string& language) const {
  auto it = lanes_.find(language);
  return it == lanes_.end() ? nullptr : &it->second.spec;
}

std::optional<sandbox::PreparedSandbox> WarmPool::Take(const std::string& language) {
  std::vector<Entry> unhealthy;  // destroyed outside the lock: that waits for the tree to die
  std::optional<sandbox::PreparedSandbox> taken;
  {
    std::lock_guard lock(mu_);
    auto it = lanes_.find(language);
    if (it == lanes_.end()) return std::nullopt;
    Lane& lane = it->second;
    lane.last_take = Clock::now();
    while (!lane.ready.empty() && !taken) {
      Entry e = std::move(lane.ready.back());  // the youngest: the oldest are the next replaced
      lane.ready.pop_back();
      if (e.box.Healthy()) {
        taken = std::move(e.box);
      } else {
        ++lane.stats.dropped;
        unhealthy.push_back(std::move(e));
      }
    }
    if (taken) {
      ++lane.stats.taken;
      ++lane.running;
    } else {
      ++lane.stats.missed;
    }
    // Demand met the pool's bottom: keep one more ready from now on.
    if (lane.ready.empty()) lane.target = std::min(lane.target + 1, options_.max_per_language);
  }
  cv_.notify_all();
  return taken;
}

void WarmPool::RunEnded(const std::string& language) {
  {
    std::lock_guard lock(mu_);
    auto it = lanes_.find(language);
    if (it == lanes_.end() || it->second.running == 0) return;
    --it->second.running;
  }
  cv_.notify_all();
}

std::map<std::string, WarmPool::Stats> WarmPool::stats() {
  std::lock_guard lock(mu_);
  std::map<std::string, Stats> out;
  for (const auto& [id, lane] : lanes_) {
    Stats s = lane.stats;
    s.ready = lane.ready.size();
    s.target = lane.target;
    s.memory_bytes = 0;
    for (const auto& e : lane.ready) s.memory_bytes += e.memory_bytes;
    out[id] = s;
  }
  return out;
}

uint64_t WarmPool::MemoryLocked() const {
  uint64_t total = 0;
  for (const auto& [id, lane] : lanes_) {
    for (const auto& e : lane.ready) total += e.memory_bytes;
  }
  return total;
}

WarmPool::Lane* WarmPool::Neediest(Clock::time_point now, Clock::time_point& wake) {
  Lane* best = nullptr;
  const uint64_t used = MemoryLocked();
  for (auto& [id, lane] : lanes_) {
    if (lane.ready.size() >= lane.target || now < lane.retry_at) continue;
    if (lane.running > 0) {  // RunEnded wakes us, or the grace's end
      if (!lane.ready.empty()) continue;
      if (const auto due = lane.last_take + options_.empty_refill_grace; now < due) {
        wake = std::min(wake, due);
        continue;
      }
    }
    if (used + lane.entry_bytes > options_.memory_budget) continue;
    const bool asked = lane.stats.taken + lane.stats.missed > 0;
    if (asked && now < lane.last_take + lane.quiet) {
      wake = std::min(wake, lane.last_take + lane.quiet);
      continue;
    }
    if (best == nullptr || lane.ready.size() < best->ready.size()) best = &lane;
  }
  return best;
}

void WarmPool::Fill() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    const auto now = Clock::now();
    std::vector<Entry> retired;
    for (auto& [id, lane] : lanes_) {
      if (lane.target > 1 && now - lane.last_take > options_.shrink_after) {
        --lane.target;
        lane.last_take = now;  // one step per quiet period
      }
      while (lane.ready.size() > lane.target ||
             (!lane.ready.empty() && now - lane.ready.front().born > options_.max_age)) {
        retired.push_back(std::move(lane.ready.front()));
        lane.ready.pop_front();
        ++lane.stats.dropped;
      }
    }
    if (!retired.empty()) {
      lock.unlock();
      retired.clear();
      lock.lock();
      continue;
    }
    auto wake = now + std::chrono::seconds(1);
    Lane* lane = Neediest(now, wake);
    if (lane == nullptr) {
      cv_.wait_until(lock, wake);
      continue;
    }
    const sandbox::SandboxSpec spec = lane->spec;
    lock.unlock();
    auto prepared = options_.prebuilt ? sandbox_.Prebuild(spec) : sandbox_.Prepare(spec);
    if (prepared) {
      if (auto ready = prepared->WaitReady(options_.ready_timeout); !ready) {
        prepared = std::unexpected(ready.error());
      }
    }
    const uint64_t bytes = prepared ? prepared->MemoryPeakBytes() : 0;
    lock.lock();
    if (!prepared) {
      ++lane->stats.failed;
      lane->stats.last_error = prepared.error().message();
      lane->retry_at = Clock::now() + std::chrono::seconds(1);  // a broken bootstrap: no busy loop
      continue;
    }
    lane->entry_bytes = bytes;
    lane->ready.push_back({std::move(*prepared), Clock::now(), bytes});
  }
  // Destroyed with the lanes, after the filler: each waits for its tree to die.
}

}  // namespace polyrun::engine
