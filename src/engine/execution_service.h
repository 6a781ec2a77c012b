#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "engine/events.h"
#include "engine/request.h"
#include "engine/result.h"
#include "store/store.h"
#include "util/error.h"
#include "util/unique_fd.h"

namespace polyrun::engine {

// Executions as a service: admission into a bounded queue, a fixed number of concurrent runs,
// every event appended to the store before anyone else sees it, live subscriptions that replay
// the past and continue with the future, cancel, interactive stdin and graceful shutdown.
// Thread-safe. The server and the CLI's `serve` are its only users; a one-shot `polyrun run`
// uses Engine directly.
class ExecutionService {
 public:
  // Runs one admitted request to completion (Engine::Run in production, a fake in tests).
  using Runner = std::function<ExecutionResult(const ExecutionRequest&, const EventSink&)>;

  struct Options {
    size_t max_running = 2;  // runs at once (worker threads)
    size_t max_queued = 64;  // admitted but not yet running; beyond it Submit refuses
    // Called after each execution's result is stored and before any subscriber hears of its
    // `finished` (metrics, per-key accounting). Must not block; runs unlocked on the thread
    // that finished the execution.
    std::function<void(const ExecutionResult&, const std::string& api_key)> on_finished;
  };

  ExecutionService(Runner runner, store::Store& store, Options options);
  ~ExecutionService();  // Shutdown(0) if not done
  ExecutionService(const ExecutionService&) = delete;
  ExecutionService& operator=(const ExecutionService&) = delete;

  // Finishes every execution the store holds unfinished (in flight when a previous process
  // died) as internal_error, reason "interrupted by server restart". Call before Submit.
  Result<size_t> RecoverInterrupted();

  enum class Refusal { kNone, kQueueFull, kShuttingDown };
  struct Admission {
    Refusal refusal = Refusal::kNone;
    std::string id;  // when admitted
  };
  struct SubmitOptions {
    std::string api_key;       // recorded with the execution (audit)
    bool interactive = false;  // stdin stays open for WriteStdin until CloseStdin or the end
  };
  // Admits `request` (its `queued` event is in the store when this returns) or refuses it.
  // Fails only when the store cannot record it. A request with a session_id does not queue:
  // it runs at once on its own thread (its session orders its executions), and does not
  // count towards max_running.
  Result<Admission> Submit(ExecutionRequest request, const SubmitOptions& options);

  // Receives events in seq order, each once, starting after `after_seq` (0: from the first),
  // ending with `finished`. Called with an internal lock held, from the caller's thread (the
  // backlog) or the execution's worker thread: it must not block or call back into the
  // service. Unsubscribes when the returned handle is destroyed.
  using EventCallback = std::function<void(const Event&)>;
  class Subscription {
   public:
    Subscription() = default;
    Subscription(Subscription&&) noexcept = default;
    Subscription& operator=(Subscription&&) noexcept = default;
    ~Subscription();

   private:
    friend class ExecutionService;
    std::function<void()> cancel_;
  };
  // kNotFound for an unknown id.
  Result<Subscription> Subscribe(const std::string& id, uint64_t after_seq, EventCallback cb);

  // The result in any state (a fold of the events so far); nullopt for an unknown id.
  Result<std::optional<ExecutionResult>> Get(const std::string& id);

  enum class CancelOutcome { kCancelling, kAlreadyFinished, kNotFound };
  // A queued execution finishes `cancelled` at once; a running one has its process tree killed
  // and finishes `cancelled` when the sandbox has reaped it.
  CancelOutcome Cancel(const std::string& id);

  // Interactive stdin (SubmitOptions::interactive). kNotFound: no such live execution;
  // kInvalidArgument: not interactive, or stdin already closed; kLimitUnavailable: the pipe is
  // full (the program is not reading), nothing written.
  Result<void> WriteStdin(const std::string& id, std::string_view data);
  Result<void> CloseStdin(const std::string& id);

  // Stops admitting (Submit refuses with kShuttingDown), lets queued and running executions
  // finish until `deadline`, then cancels the rest and waits for them to be stored. Idempotent.
  void Shutdown(std::chrono::milliseconds grace);

  struct Stats {
    size_t queued = 0;
    size_t running = 0;
  };
  Stats stats() const;
  // Replaces Options::on_finished; call before the first Submit.
  void Observe(std::function<void(const ExecutionResult&, const std::string& api_key)> fn) {
    options_.on_finished = std::move(fn);
  }
  const Options& options() const { return options_; }

 private:
  struct Live;
  void Worker();
  void Execute(const std::shared_ptr<Live>& live);
  // Stores `e` and then hands it to the live subscribers, in that order, under live->mu.
  void Publish(Live& live, const Event& e);
  void FinishWithoutRunning(const std::shared_ptr<Live>& live, Status status,
                            const std::string& reason);
  std::shared_ptr<Live> FindLive(const std::string& id);

  Runner runner_;
  store::Store& store_;
  Options options_;

  mutable std::mutex mu_;
  std::condition_variable work_cv_;  // queue non-empty or stopping
  std::condition_variable idle_cv_;  // an execution finished
  std::deque<std::shared_ptr<Live>> queue_;
  std::map<std::string, std::shared_ptr<Live>> live_;
  size_t running_ = 0;
  bool accepting_ = true;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
  // Session executions' threads; finished ones are joined at the next Submit and at Shutdown.
  struct Direct {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::vector<Direct> direct_;
};

// Events as store records and back (payload as JSON text, output bytes as they are).
store::EventRecord ToRecord(const Event& e);
Result<Event> FromRecord(const store::EventRecord& r);

}  // namespace polyrun::engine
