#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "engine/engine.h"
#include "engine/session.h"
#include "store/store.h"

namespace polyrun::engine {

// The live sessions of one process: creation with admission (a maximum count, exclusive
// labels), lookup, idle and lifetime expiry, and a record of each session in the store (id
// "se_…": `started`, a `status` event per restart, `finished` when it ends), so history shows
// them. Executions in a session are ordinary executions with `session_id` set. Thread-safe.
class SessionManager {
 public:
  struct Options {
    size_t max_sessions = 8;
    std::chrono::milliseconds default_lifetime{std::chrono::hours(1)};
    std::chrono::milliseconds max_lifetime{std::chrono::hours(24)};
    std::chrono::milliseconds default_idle_timeout{std::chrono::minutes(15)};
    std::chrono::milliseconds start_timeout{std::chrono::seconds(30)};
  };
  // `store` may be null (the library without a log: the Jupyter kernel, tests).
  SessionManager(Engine& engine, store::Store* store, Options options);
  ~SessionManager();  // Shutdown()
  SessionManager(const SessionManager&) = delete;
  SessionManager& operator=(const SessionManager&) = delete;

  // Starts a session and waits until its driver is ready. kInvalidArgument names the field;
  // kBusy: the maximum is reached; kConflict: `exclusive_label` names a label that a live or
  // starting session already has with the same value; kUnavailable: shutting down.
  Result<std::shared_ptr<Session>> Create(const SessionRequest& request,
                                          const std::string& exclusive_label = "",
                                          const std::string& api_key = "");
  std::shared_ptr<Session> Find(const std::string& id);
  std::vector<Session::Info> List();
  // kNotFound for an unknown or already ended session.
  Result<void> Close(const std::string& id, const std::string& reason);

  // The ExecutionService's runner for requests with a session_id.
  ExecutionResult Execute(const ExecutionRequest& request, const EventSink& sink);

  // Closes every session. Idempotent.
  void Shutdown();

  struct SessionTimes {
    std::chrono::milliseconds lifetime, idle_timeout;
  };

 private:
  struct Entry {
    std::shared_ptr<Session> session;
    std::map<std::string, std::string> labels;
    std::chrono::milliseconds idle_timeout;
  };
  void Reaper();
  void Record(const std::string& id, const std::string& what, Status status,
              const std::string& reason);

  Engine& engine_;
  store::Store* store_;
  Options options_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Entry> sessions_;
  size_t starting_ = 0;  // admitted, driver not yet ready
  std::map<std::string, Status> closing_;
  std::map<std::string, std::map<std::string, std::string>>
      pending_;  // starting: their labels  // how a session we are closing ends in its record
  bool stopping_ = false;
  std::mutex record_mu_;  // one session's records in order
  std::map<std::string, uint64_t> next_seq_;
  std::thread reaper_;
};

// A new session id: "se_" + the same time-ordered, URL-safe form as execution ids.
std::string NewSessionId();

}  // namespace polyrun::engine
