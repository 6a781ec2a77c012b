#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "engine/events.h"
#include "engine/request.h"
#include "engine/result.h"
#include "languages/limits.h"
#include "sandbox/sandbox.h"
#include "util/error.h"
#include "util/unique_fd.h"

namespace polyrun::engine {

// What a client asks for when it creates a session (DESIGN §4's request, minus the code).
struct SessionRequest {
  std::string language;  // id, alias or extension
  std::string version;
  // Per execution: wall_time, cpu_time, output. For the whole session: memory, processes,
  // file_size, open_files, disk.
  languages::LimitSet limits;
  std::chrono::milliseconds lifetime{0};      // 0: the manager's default
  std::chrono::milliseconds idle_timeout{0};  // 0: the manager's default
  std::map<std::string, std::string> env;
  std::vector<RequestFile> files;
  std::map<std::string, std::string> labels;
  bool network = false;
};

// A validated session request, ready to start: the driver's sandbox and the resolved limits.
// Built by Engine::PrepareSession.
struct SessionLaunch {
  std::string language;  // the language's id
  std::string version;
  languages::LimitSet limits;  // resolved
  std::map<std::string, std::string> labels;
  sandbox::SandboxSpec spec;  // the driver: argv, env, binds, files, session-wide limits
};

// One live session: a sandbox running the language's driver (docs/sessions.md), kept across
// executions. Executions run one at a time (callers queue on the session). Thread-safe.
class Session {
 public:
  enum class State { kStarting, kIdle, kBusy, kDead };
  // A session-level happening for the log and live clients: "started", "restarted" (the
  // driver was replaced, state lost), "ended"; `reason` says why in one sentence.
  using Observer = std::function<void(const std::string& what, const std::string& reason)>;

  // Starts the driver and waits for its `ready` frame (at most `start_timeout`). The launch's
  // spec.limits.wall_time is the session's lifetime.
  static Result<std::shared_ptr<Session>> Start(sandbox::Sandbox& sandbox, SessionLaunch launch,
                                                std::string id, Observer observer,
                                                std::chrono::milliseconds start_timeout);
  ~Session();  // ends the driver (Close) and joins its thread
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Runs `request.code` in the session. Never fails: problems become the result's status.
  // Honours request.id/created_at/queued_at (admitted by the ExecutionService), cancel_fd
  // (interrupts, the session survives), stdin_fd or stdin_data (answers to input requests,
  // one line each; none left: end of file). Per-execution limits: wall_time, cpu_time, output.
  // An execution that does not stop within a grace period after its interrupt, or a driver
  // that dies, costs the session its state: the driver is restarted and the result says so.
  ExecutionResult Execute(const ExecutionRequest& request, const EventSink& sink);

  // One execution's limits: the session's, with wall_time, cpu_time and output lowered where
  // `asked` says so. kInvalidArgument naming the field for a value above the session's or a
  // session-wide limit.
  Result<languages::LimitSet> ExecutionLimits(const languages::LimitSet& asked) const;

  // Interrupts the running execution (its status becomes `cancelled`). kInvalidArgument when
  // idle.
  Result<void> Interrupt();
  // Replaces the driver with a fresh one (state lost). Waits for a running execution to end.
  Result<void> Restart(const std::string& reason);
  // Ends the session; later calls fail with kInvalidArgument. Idempotent.
  void Close(const std::string& reason);

  // A completion/is_complete/inspect query (docs/sessions.md): `command` without `id`; the
  // reply frame. Waits for the session to be idle: kBusy when it stays busy past `timeout`,
  // kTimeout when the driver does not answer by then; kInvalidArgument: ended or restarting.
  Result<nlohmann::json> Query(nlohmann::json command, std::chrono::milliseconds timeout);

  struct Info {
    std::string id;
    std::string language, version;
    State state = State::kStarting;
    std::string created_at, last_active_at;  // RFC 3339
    std::chrono::steady_clock::time_point last_active;
    uint64_t executions = 0;
    uint64_t restarts = 0;
    uint64_t memory_bytes = 0;  // the sandbox's peak so far
    std::string ended_reason;   // when dead
    languages::LimitSet limits;
    std::map<std::string, std::string> labels;
  };
  Info info() const;
  const std::string& id() const { return id_; }
  const std::string& language() const { return launch_.language; }

 private:
  struct Driver;
  struct Turn;
  Session(sandbox::Sandbox& sandbox, SessionLaunch launch, std::string id, Observer observer);

  // Starts a driver and waits for ready. Called with no driver running.
  Result<void> Launch(std::chrono::milliseconds timeout);
  // Kills the driver and waits for its thread.
  void StopDriver(std::unique_lock<std::mutex>& lock);
  void OnOutput(Driver& d, sandbox::Stream stream, std::string_view chunk);
  void OnFrames(Driver& d, std::string_view bytes);
  void OnFrame(const nlohmann::json& frame);
  void OnUsage(Driver& d, uint64_t cpu_ns, uint64_t memory_peak);
  void OnExit(Driver& d, const Result<sandbox::SandboxOutcome>& outcome);
  void Wake();
  void DrainWake();
  // Queues a command line for the driver (written by the waiting caller's loop).
  void SendLocked(const nlohmann::json& command);
  bool FlushCommands();
  void Signal(int sig);

  sandbox::Sandbox& sandbox_;
  const SessionLaunch launch_;
  const std::string id_;
  Observer observer_;
  UniqueFd wake_r_, wake_w_;  // written whenever something a waiter may want happened

  mutable std::mutex mu_;  // everything below
  std::condition_variable turn_cv_;
  std::unique_ptr<Driver> driver_;
  Turn* turn_ = nullptr;     // the running execution or query
  bool turn_taken_ = false;  // an execution/query holds the session
  bool closed_ = false;
  Info info_;
  std::string pending_commands_;
};

std::string_view SessionStateName(Session::State s);
// The limits an execution in a session may set for itself (lower than the session's); the
// others apply to the whole session.
bool PerExecutionLimit(languages::Limit l);

}  // namespace polyrun::engine
