#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace polyrun::server {

// One API key as the operator configures it ([server.keys.NAME] in the config file). Only the
// key's SHA-256 is kept (`printf %s "$KEY" | sha256sum`), never the key.
struct ApiKey {
  std::string name;            // recorded with every execution it submits (audit)
  std::string sha256;          // lowercase hex
  double runs_per_minute = 0;  // token bucket refilled continuously; 0: unlimited
  size_t max_running = 0;      // executions queued or running at once; 0: unlimited
};

// The configured keys and their live accounting. Copies share the accounting. Thread-safe.
class ApiKeys {
 public:
  ApiKeys() = default;
  explicit ApiKeys(std::vector<ApiKey> keys);

  bool empty() const { return !state_ || state_->keys.empty(); }
  // The key whose hash matches `token` (compared in constant time); nullptr when none does.
  const ApiKey* Find(std::string_view token) const;

  enum class Admit { kOk, kRateLimited, kTooManyRunning };
  // Takes one token and one running slot for `name`; when refused, `retry_after` says when a
  // token will be there (rate) or a guess (running).
  Admit Acquire(const std::string& name, std::chrono::seconds& retry_after) const;
  // Gives back the running slot of a finished execution (or of a submit that failed).
  void Release(const std::string& name) const;

 private:
  struct Account {
    double tokens = 0;
    std::chrono::steady_clock::time_point refilled;
    size_t running = 0;
  };
  struct State {
    std::vector<ApiKey> keys;
    std::mutex mu;
    std::map<std::string, Account> accounts;
  };
  std::shared_ptr<State> state_;
};

}  // namespace polyrun::server
