#include "server/api_keys.h"

#include <sodium.h>

#include <algorithm>
#include <cmath>

#include "util/digest.h"

namespace polyrun::server {

ApiKeys::ApiKeys(std::vector<ApiKey> keys) : state_(std::make_shared<State>()) {
  const auto now = std::chrono::steady_clock::now();
  for (const auto& k : keys) {
    // A full bucket: a burst of one minute's worth is allowed at start.
    state_->accounts[k.name] = {std::max(k.runs_per_minute, 1.0), now, 0};
  }
  state_->keys = std::move(keys);
}

const ApiKey* ApiKeys::Find(std::string_view token) const {
  if (!state_ || token.empty()) return nullptr;
  const std::string digest = Sha256().AddRaw(token).HexDigest();
  const ApiKey* found = nullptr;
  for (const auto& k : state_->keys) {
    // Every key is compared in full so the time taken does not tell which one nearly matched.
    if (k.sha256.size() == digest.size() &&
        sodium_memcmp(k.sha256.data(), digest.data(), digest.size()) == 0) {
      found = &k;
    }
  }
  return found;
}

ApiKeys::Admit ApiKeys::Acquire(const std::string& name, std::chrono::seconds& retry_after) const {
  if (!state_) return Admit::kOk;
  auto key = std::find_if(state_->keys.begin(), state_->keys.end(),
                          [&](const ApiKey& k) { return k.name == name; });
  if (key == state_->keys.end()) return Admit::kOk;
  std::lock_guard lock(state_->mu);
  Account& a = state_->accounts[name];
  if (key->max_running > 0 && a.running >= key->max_running) {
    retry_after = std::chrono::seconds(1);
    return Admit::kTooManyRunning;
  }
  if (key->runs_per_minute > 0) {
    const auto now = std::chrono::steady_clock::now();
    const double minutes = std::chrono::duration<double>(now - a.refilled).count() / 60.0;
    a.tokens =
        std::min(std::max(key->runs_per_minute, 1.0), a.tokens + minutes * key->runs_per_minute);
    a.refilled = now;
    if (a.tokens < 1.0) {
      const double wait_s = (1.0 - a.tokens) * 60.0 / key->runs_per_minute;
      retry_after = std::chrono::seconds(static_cast<int64_t>(std::ceil(wait_s)));
      return Admit::kRateLimited;
    }
    a.tokens -= 1.0;
  }
  ++a.running;
  return Admit::kOk;
}

void ApiKeys::Release(const std::string& name) const {
  if (!state_) return;
  std::lock_guard lock(state_->mu);
  auto it = state_->accounts.find(name);
  if (it != state_->accounts.end() && it->second.running > 0) --it->second.running;
}

}  // namespace polyrun::server
