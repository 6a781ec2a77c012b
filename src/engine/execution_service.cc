#include "engine/execution_service.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>

#include "engine/engine.h"
#include "engine/result_json.h"

namespace polyrun::engine {

using nlohmann::json;

namespace {

constexpr auto kReplace = json::error_handler_t::replace;

// 1 MiB of interactive stdin may wait in the pipe before the program reads it.
constexpr int kStdinPipeBytes = 1 << 20;

Result<std::pair<UniqueFd, UniqueFd>> MakePipe(const char* what) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return SysFail("pipe2", what);
  return std::pair{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

uint64_t MsSince(std::chrono::steady_clock::time_point t) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t)
          .count());
}

}  // namespace

store::EventRecord ToRecord(const Event& e) {
  store::EventRecord r;
  r.execution_id = e.execution_id;
  r.seq = e.seq;
  r.t_ms = e.t_ms;
  r.kind = std::string(EventKindName(e.kind));
  r.stream = e.stream;
  r.data = e.data;
  if (!e.payload.is_null()) r.payload = e.payload.dump(-1, ' ', false, kReplace);
  return r;
}

Result<Event> FromRecord(const store::EventRecord& r) {
  Event e;
  e.execution_id = r.execution_id;
  e.seq = r.seq;
  e.t_ms = r.t_ms;
  auto kind = EventKindFromName(r.kind);
  if (!kind)
    return Fail(Errc::kParse, "event " + r.execution_id + "/" + std::to_string(r.seq) +
                                  ": unknown kind \"" + r.kind + "\"");
  e.kind = *kind;
  e.stream = r.stream;
  e.data = r.data;
  if (!r.payload.empty()) {
    e.payload = json::parse(r.payload, nullptr, false);
    if (e.payload.is_discarded()) {
      return Fail(Errc::kParse, "event " + r.execution_id + "/" + std::to_string(r.seq) +
                                    ": payload is not JSON");
    }
  }
  return e;
}

// One admitted execution while it is queued or running. Its events are kept in memory until it
// finishes so that subscribers replay from here, not from the store.
struct ExecutionService::Live {
  std::string id;
  ExecutionRequest request;
  std::string api_key;
  UniqueFd cancel_r, cancel_w;
  UniqueFd stdin_r, stdin_w;

  std::mutex mu;  // everything below
  std::vector<Event> events;
  ExecutionResult folded;
  std::map<uint64_t, EventCallback> subscribers;
  uint64_t next_subscriber = 0;
  bool finished = false;
};

ExecutionService::Subscription::~Subscription() {
  if (cancel_) cancel_();
}

ExecutionService::ExecutionService(Runner runner, store::Store& store, Options options)
    : runner_(std::move(runner)), store_(store), options_(std::move(options)) {
  options_.max_running = std::max<size_t>(options_.max_running, 1);
  workers_.reserve(options_.max_running);
  for (size_t i = 0; i < options_.max_running; ++i) workers_.emplace_back([this] { Worker(); });
}

ExecutionService::~ExecutionService() {
  Shutdown(std::chrono::milliseconds(0));
}

Result<size_t> ExecutionService::RecoverInterrupted() {
  auto unfinished = store_.Unfinished();
  if (!unfinished) return std::unexpected(unfinished.error());
  size_t n = 0;
  for (const auto& rec : *unfinished) {
    auto records = store_.Events(rec.id, 0);
    if (!records) return std::unexpected(records.error());
    ExecutionResult folded;
    uint64_t last_seq = 0, last_t = 0;
    for (const auto& r : *records) {
      auto e = FromRecord(r);
      if (!e) return std::unexpected(e.error());
      Apply(folded, *e);
      last_seq = r.seq;
      last_t = r.t_ms;
    }
    Event fin;
    fin.execution_id = rec.id;
    fin.seq = last_seq + 1;
    fin.t_ms = last_t;
    fin.kind = Event::Kind::kFinished;
    const std::string now = NowRfc3339();
    fin.payload = {{"status", StatusName(Status::kInternalError)},
                   {"reason", "interrupted by server restart"},
                   {"finished_at", now}};
    Apply(folded, fin);
    if (folded.id.empty()) folded.id = rec.id;
    auto done = store_.Finish(rec.id, std::string(StatusName(Status::kInternalError)), now,
                              ToJson(folded).dump(-1, ' ', false, kReplace), {ToRecord(fin)});
    if (!done) return std::unexpected(done.error());
    ++n;
  }
  return n;
}

Result<ExecutionService::Admission> ExecutionService::Submit(ExecutionRequest request,
                                                             const SubmitOptions& options) {
  auto live = std::make_shared<Live>();
  auto cancel = MakePipe("cancel pipe");
  if (!cancel) return std::unexpected(cancel.error());
  live->cancel_r = std::move(cancel->first);
  live->cancel_w = std::move(cancel->second);
  if (options.interactive) {
    auto in = MakePipe("stdin pipe");
    if (!in) return std::unexpected(in.error());
    live->stdin_r = std::move(in->first);
    live->stdin_w = std::move(in->second);
    // Best effort: a larger pipe lets bursts of input wait for a slow reader.
    (void)::fcntl(live->stdin_w.get(), F_SETPIPE_SZ, kStdinPipeBytes);
    if (::fcntl(live->stdin_w.get(), F_SETFL, O_NONBLOCK) != 0) {
      return SysFail("fcntl", "stdin pipe: O_NONBLOCK");
    }
    request.stdin_fd = live->stdin_r.get();
  }
  request.cancel_fd = live->cancel_r.get();
  request.id = NewExecutionId();
  request.created_at = NowRfc3339();
  request.queued_at = std::chrono::steady_clock::now();
  live->id = request.id;
  live->api_key = options.api_key;

  Event queued;
  queued.execution_id = request.id;
  queued.seq = 1;
  queued.kind = Event::Kind::kQueued;
  queued.payload = QueuedPayload(request, request.created_at);

  std::string initial_stdin;
  if (options.interactive) initial_stdin.swap(request.stdin_data);
  live->request = std::move(request);

  std::lock_guard lock(mu_);
  if (!accepting_) return Admission{Refusal::kShuttingDown, {}};
  if (queue_.size() >= options_.max_queued) return Admission{Refusal::kQueueFull, {}};
  store::ExecutionRecord rec;
  rec.id = live->id;
  rec.language = live->request.language;
  rec.status = std::string(StatusName(Status::kQueued));
  rec.labels = live->request.labels;
  rec.api_key = options.api_key;
  rec.created_at = live->request.created_at;
  if (auto begun = store_.Begin(rec, {ToRecord(queued)}); !begun) {
    return std::unexpected(begun.error());
  }
  Apply(live->folded, queued);
  live->events.push_back(std::move(queued));
  if (!initial_stdin.empty()) {
    ssize_t n = ::write(live->stdin_w.get(), initial_stdin.data(), initial_stdin.size());
    if (n != static_cast<ssize_t>(initial_stdin.size())) {
      // Recorded but never run: finish it as the caller's mistake rather than lose it.
      FinishWithoutRunning(live, Status::kRejected,
                           "stdin: more initial input than an interactive run's pipe holds (" +
                               std::to_string(kStdinPipeBytes) + " bytes); send it in parts");
      return Admission{Refusal::kNone, live->id};
    }
  }
  live_[live->id] = live;
  if (!live->request.session_id.empty()) {
    std::erase_if(direct_, [](Direct& d) {
      if (!d.done->load()) return false;
      d.thread.join();
      return true;
    });
    auto done = std::make_shared<std::atomic<bool>>(false);
    direct_.push_back({std::thread([this, live, done] {
                         Execute(live);
                         {
                           std::lock_guard g(mu_);
                           live_.erase(live->id);
                           done->store(true);
                         }
                         idle_cv_.notify_all();
                       }),
                       done});
    return Admission{Refusal::kNone, live->id};
  }
  queue_.push_back(live);
  work_cv_.notify_one();
  return Admission{Refusal::kNone, live->id};
}

void ExecutionService::Worker() {
  for (;;) {
    std::shared_ptr<Live> live;
    {
      std::unique_lock lock(mu_);
      work_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;
      live = std::move(queue_.front());
      queue_.pop_front();
      ++running_;
    }
    Execute(live);
    {
      std::lock_guard lock(mu_);
      --running_;
      live_.erase(live->id);
    }
    idle_cv_.notify_all();
  }
}

void ExecutionService::Execute(const std::shared_ptr<Live>& live) {
  // The queued event is already published; Run emits it again for its own fold.
  EventSink sink = [&](const Event& e) {
    if (e.kind != Event::Kind::kQueued) Publish(*live, e);
  };
  (void)runner_(live->request, sink);
  bool finished = false;
  {
    std::lock_guard lock(live->mu);
    finished = live->finished;
  }
  // A runner that returned without a finished event broke its contract; never lose the run.
  if (!finished)
    FinishWithoutRunning(live, Status::kInternalError, "the runner ended without a result");
}

void ExecutionService::Publish(Live& live, const Event& e) {
  std::unique_lock lock(live.mu);
  if (live.finished) return;
  Apply(live.folded, e);
  Result<void> stored;
  if (e.kind == Event::Kind::kFinished) {
    live.finished = true;
    live.stdin_w.reset();
    stored =
        store_.Finish(live.id, std::string(StatusName(live.folded.status)), live.folded.finished_at,
                      ToJson(live.folded).dump(-1, ' ', false, kReplace), {ToRecord(e)});
  } else {
    std::map<std::string, std::string> status;
    if (e.kind == Event::Kind::kStarted) status[live.id] = StatusName(Status::kRunning);
    stored = store_.Append({ToRecord(e)}, status);
  }
  if (!stored) {
    // The live result is still delivered; the log has a hole that the operator must see.
    std::fprintf(stderr, "polyrun: store: %s\n", stored.error().message().c_str());
  }
  live.events.push_back(e);
  if (live.finished && options_.on_finished) {
    // The accounting comes before anyone hears of the end: a client told `finished` (an HTTP
    // answer) must find the run counted and its API key's running slot free again. Unlocked,
    // like every callback of ours that is not a subscriber's; a Subscribe meanwhile replays
    // `finished` from `events` and does not register.
    ExecutionResult folded = live.folded;
    lock.unlock();
    options_.on_finished(folded, live.api_key);
    lock.lock();
  }
  for (auto& [_, cb] : live.subscribers) cb(e);
  if (live.finished) {
    // Destroyed after unlocking: a callback may own the last reference to its subscriber.
    std::map<uint64_t, EventCallback> done;
    done.swap(live.subscribers);
    lock.unlock();
    done.clear();
  }
}

void ExecutionService::FinishWithoutRunning(const std::shared_ptr<Live>& live, Status status,
                                            const std::string& reason) {
  Event fin;
  fin.execution_id = live->id;
  fin.kind = Event::Kind::kFinished;
  fin.payload = {{"status", StatusName(status)}, {"reason", reason}, {"finished_at", NowRfc3339()}};
  {
    std::lock_guard lock(live->mu);
    fin.seq = live->events.size() + 1;
  }
  fin.t_ms = MsSince(live->request.queued_at);
  Publish(*live, fin);
}

std::shared_ptr<ExecutionService::Live> ExecutionService::FindLive(const std::string& id) {
  std::lock_guard lock(mu_);
  auto it = live_.find(id);
  return it == live_.end() ? nullptr : it->second;
}

Result<ExecutionService::Subscription> ExecutionService::Subscribe(const std::string& id,
                                                                   uint64_t after_seq,
                                                                   EventCallback cb) {
  {
    std::unique_lock lock(mu_);
    auto it = live_.find(id);
    if (it != live_.end()) {
      std::shared_ptr<Live> live = it->second;
      std::lock_guard live_lock(live->mu);
      lock.unlock();
      for (const auto& e : live->events) {
        if (e.seq > after_seq) cb(e);
      }
      Subscription sub;
      if (!live->finished) {
        const uint64_t key = live->next_subscriber++;
        live->subscribers.emplace(key, std::move(cb));
        std::weak_ptr<Live> weak = live;
        sub.cancel_ = [weak, key] {
          if (auto l = weak.lock()) {
            std::lock_guard g(l->mu);
            l->subscribers.erase(key);
          }
        };
      }
      return sub;
    }
  }
  // Not live: finished (everything is in the store) or unknown.
  auto records = store_.Events(id, static_cast<int64_t>(after_seq));
  if (!records) return std::unexpected(records.error());
  if (records->empty()) {
    auto exists = store_.Get(id);
    if (!exists) return std::unexpected(exists.error());
    if (!*exists) return Fail(Errc::kNotFound, "execution " + id + " not found");
  }
  for (const auto& r : *records) {
    auto e = FromRecord(r);
    if (!e) return std::unexpected(e.error());
    cb(*e);
  }
  return Subscription{};
}

Result<std::optional<ExecutionResult>> ExecutionService::Get(const std::string& id) {
  if (auto live = FindLive(id)) {
    std::lock_guard lock(live->mu);
    return std::optional<ExecutionResult>(live->folded);
  }
  auto records = store_.Events(id, 0);
  if (!records) return std::unexpected(records.error());
  if (records->empty()) return std::optional<ExecutionResult>();
  ExecutionResult folded;
  for (const auto& r : *records) {
    auto e = FromRecord(r);
    if (!e) return std::unexpected(e.error());
    Apply(folded, *e);
  }
  return std::optional<ExecutionResult>(std::move(folded));
}

ExecutionService::CancelOutcome ExecutionService::Cancel(const std::string& id) {
  std::shared_ptr<Live> queued;
  {
    std::lock_guard lock(mu_);
    auto it = live_.find(id);
    if (it != live_.end()) {
      auto q = std::find(queue_.begin(), queue_.end(), it->second);
      if (q == queue_.end()) {
        {
          // Finished, but its worker has not yet dropped it from live_.
          std::lock_guard live_lock(it->second->mu);
          if (it->second->finished) return CancelOutcome::kAlreadyFinished;
        }
        // Running: the sandbox sees the cancel pipe become readable and kills the tree.
        const char byte = 1;
        (void)::write(it->second->cancel_w.get(), &byte, 1);
        return CancelOutcome::kCancelling;
      }
      queued = *q;
      queue_.erase(q);
    }
  }
  if (queued) {
    FinishWithoutRunning(queued, Status::kCancelled, "cancelled before it started");
    {
      std::lock_guard lock(mu_);
      live_.erase(id);
    }
    idle_cv_.notify_all();
    return CancelOutcome::kCancelling;
  }
  auto rec = store_.Get(id);
  return rec && *rec ? CancelOutcome::kAlreadyFinished : CancelOutcome::kNotFound;
}

Result<void> ExecutionService::WriteStdin(const std::string& id, std::string_view data) {
  auto live = FindLive(id);
  if (!live) return Fail(Errc::kNotFound, "execution " + id + " is not running");
  std::lock_guard lock(live->mu);
  if (!live->stdin_w.valid()) {
    return Fail(Errc::kInvalidArgument, live->finished || live->stdin_r.valid()
                                            ? "stdin: already closed"
                                            : "stdin: this execution was not started interactive");
  }
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(live->stdin_w.get(), data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      return Fail(Errc::kLimitUnavailable, "stdin: the program is not reading its input (" +
                                               std::to_string(done) + " of " +
                                               std::to_string(data.size()) + " bytes written)");
    }
    // EPIPE: the program closed its stdin or exited; what it did not read is gone.
    if (n < 0) return SysFail("write", "stdin of " + id);
    done += static_cast<size_t>(n);
  }
  return {};
}

Result<void> ExecutionService::CloseStdin(const std::string& id) {
  auto live = FindLive(id);
  if (!live) return Fail(Errc::kNotFound, "execution " + id + " is not running");
  std::lock_guard lock(live->mu);
  if (!live->stdin_w.valid()) return Fail(Errc::kInvalidArgument, "stdin: already closed");
  live->stdin_w.reset();
  return {};
}

void ExecutionService::Shutdown(std::chrono::milliseconds grace) {
  std::deque<std::shared_ptr<Live>> abandoned;
  {
    std::unique_lock lock(mu_);
    accepting_ = false;
    idle_cv_.wait_for(lock, grace, [&] {
      return queue_.empty() && running_ == 0 &&
             std::all_of(direct_.begin(), direct_.end(),
                         [](const Direct& d) { return d.done->load(); });
    });
    abandoned.swap(queue_);
    for (auto& [_, live] : live_) {
      if (std::find(abandoned.begin(), abandoned.end(), live) == abandoned.end()) {
        const char byte = 1;
        (void)::write(live->cancel_w.get(), &byte, 1);
      }
    }
    stopping_ = true;
  }
  work_cv_.notify_all();
  for (auto& live : abandoned) {
    FinishWithoutRunning(live, Status::kCancelled,
                         "cancelled: the server shut down before it started");
    std::lock_guard lock(mu_);
    live_.erase(live->id);
  }
  for (auto& t : workers_) {
    if (t.joinable()) t.join();
  }
  workers_.clear();
  std::vector<Direct> direct;
  {
    std::lock_guard lock(mu_);
    direct.swap(direct_);
  }
  for (auto& d : direct) d.thread.join();
}

ExecutionService::Stats ExecutionService::stats() const {
  std::lock_guard lock(mu_);
  return {queue_.size(), running_};
}

}  // namespace polyrun::engine
