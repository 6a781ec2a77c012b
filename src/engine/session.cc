#include "engine/session.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>

#include "engine/engine.h"
#include "engine/result_json.h"

namespace polyrun::engine {

using languages::Limit;
using nlohmann::json;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

// How long an interrupted execution may take to stop before the driver is replaced.
constexpr milliseconds kInterruptGrace{2000};
// A frame longer than this ends the session (a PNG fits; a runaway line does not).
constexpr size_t kMaxFrameBytes = 32u << 20;
constexpr auto kReplace = json::error_handler_t::replace;

Result<std::pair<UniqueFd, UniqueFd>> MakePipe(const char* what, bool nonblocking_write) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return SysFail("pipe2", what);
  UniqueFd r(fds[0]), w(fds[1]);
  if (nonblocking_write && ::fcntl(w.get(), F_SETFL, O_NONBLOCK) != 0) {
    return SysFail("fcntl", std::string(what) + ": O_NONBLOCK");
  }
  return std::pair{std::move(r), std::move(w)};
}

uint64_t MsBetween(Clock::time_point a, Clock::time_point b) {
  return static_cast<uint64_t>(std::chrono::duration_cast<milliseconds>(b - a).count());
}

// The error frame as DESIGN §4's Error; positions point into the cell.
languages::ErrorInfo ErrorFromFrame(const json& f, const std::string& cell) {
  languages::ErrorInfo e;
  e.type = "exception";
  e.name = f.value("name", "Error");
  if (f.contains("message") && f["message"].is_string()) e.message = f["message"];
  e.file = cell;
  if (f.contains("line") && f["line"].is_number_integer()) e.line = f["line"].get<int>();
  if (f.contains("column") && f["column"].is_number_integer()) e.column = f["column"].get<int>();
  if (f.contains("traceback") && f["traceback"].is_array()) {
    for (const auto& t : f["traceback"]) {
      languages::Frame fr;
      if (t.is_object()) {
        fr.file = t.contains("cell") && t["cell"].is_string() ? t["cell"].get<std::string>() : cell;
        if (t.contains("line") && t["line"].is_number_integer()) fr.line = t["line"].get<int>();
        if (t.contains("column") && t["column"].is_number_integer())
          fr.column = t["column"].get<int>();
        if (t.contains("function") && t["function"].is_string()) fr.function = t["function"];
      } else if (t.is_string()) {
        fr.function = t.get<std::string>();
      } else {
        continue;
      }
      e.traceback.push_back(std::move(fr));
    }
  }
  return e;
}

// A frame's MIME bundle: an object of strings (JSON values allowed for application/json).
json BundleOf(const json& f) {
  if (!f.contains("data") || !f["data"].is_object()) return json::object();
  return f["data"];
}

}  // namespace

bool PerExecutionLimit(Limit l) {
  return l == Limit::kWallTime || l == Limit::kCpuTime || l == Limit::kOutput;
}

std::string_view SessionStateName(Session::State s) {
  switch (s) {
    case Session::State::kStarting:
      return "starting";
    case Session::State::kIdle:
      return "idle";
    case Session::State::kBusy:
      return "busy";
    case Session::State::kDead:
      return "dead";
  }
  return "?";
}

// One sandbox running the driver, supervised by its own thread.
struct Session::Driver {
  UniqueFd cmd_r, cmd_w;    // commands: cmd_r is pumped into the driver's stdin
  UniqueFd sig_r, sig_w;    // signal numbers for the sandbox to forward
  UniqueFd kill_r, kill_w;  // readable: the sandbox kills the tree
  std::thread thread;
  std::string frame_buf;
  // The driver broke the frame protocol (a frame too long) and is being killed: nothing it
  // writes after that counts, or its `done` could end the turn before its death is seen and the
  // death would land on the next execution.
  bool frames_refused = false;
  bool ready = false;
  bool exited = false;
  bool killed_by_us = false;
  sandbox::Termination termination = sandbox::Termination::kExited;
  std::string exit_reason;
  uint64_t cpu_ns = 0;
  uint64_t memory_peak = 0;
};

// The execution or query holding the session, as the driver's frames fill it in.
struct Session::Turn {
  EventRecorder* rec = nullptr;  // executions; null for a query
  std::string command_id;
  uint64_t output_cap = 0;
  uint64_t output_bytes = 0;
  uint64_t cpu_limit_ns = 0;
  uint64_t cpu_start_ns = 0;
  std::string over;  // the limit or "cancelled" that made us interrupt it
  bool stdout_truncated = false, stderr_truncated = false;
  bool done = false;
  std::string done_status;
  json result;
  std::optional<languages::ErrorInfo> error;
  json reply;  // a query's reply frame
  bool input_pending = false;
};

Session::Session(sandbox::Sandbox& sandbox, SessionLaunch launch, std::string id, Observer observer)
    : sandbox_(sandbox),
      launch_(std::move(launch)),
      id_(std::move(id)),
      observer_(std::move(observer)) {
  info_.id = id_;
  info_.language = launch_.language;
  info_.version = launch_.version;
  info_.created_at = NowRfc3339();
  info_.last_active_at = info_.created_at;
  info_.last_active = Clock::now();
  info_.limits = launch_.limits;
  info_.labels = launch_.labels;
}

Result<std::shared_ptr<Session>> Session::Start(sandbox::Sandbox& sandbox, SessionLaunch launch,
                                                std::string id, Observer observer,
                                                milliseconds start_timeout) {
  std::shared_ptr<Session> s(
      new Session(sandbox, std::move(launch), std::move(id), std::move(observer)));
  auto wake = MakePipe("session wake pipe", true);
  if (!wake) return std::unexpected(wake.error());
  if (::fcntl(wake->first.get(), F_SETFL, O_NONBLOCK) != 0) {
    return SysFail("fcntl", "session wake pipe: O_NONBLOCK");
  }
  s->wake_r_ = std::move(wake->first);
  s->wake_w_ = std::move(wake->second);
  std::unique_lock lock(s->mu_);
  s->turn_taken_ = true;
  lock.unlock();
  auto launched = s->Launch(start_timeout);
  lock.lock();
  s->turn_taken_ = false;
  if (!launched) {
    s->closed_ = true;
    s->info_.state = State::kDead;
    s->info_.ended_reason = launched.error().message();
    return std::unexpected(launched.error());
  }
  s->info_.state = State::kIdle;
  lock.unlock();
  if (s->observer_) s->observer_("started", "");
  return s;
}

Session::~Session() {
  Close("the session was discarded");
}

void Session::DrainWake() {
  char buf[256];
  // Non-blocking, and called with mu_ released (the analyzer cannot see through unique_lock).
  // NOLINTNEXTLINE(clang-analyzer-unix.BlockInCriticalSection)
  while (::read(wake_r_.get(), buf, sizeof buf) > 0) {
  }
}

void Session::Wake() {
  const char b = 1;
  (void)::write(wake_w_.get(), &b, 1);
}

void Session::Signal(int sig) {
  if (!driver_) return;
  const auto b = static_cast<unsigned char>(sig);
  (void)::write(driver_->sig_w.get(), &b, 1);
}

Result<void> Session::Launch(milliseconds timeout) {
  auto d = std::make_unique<Driver>();
  auto cmd = MakePipe("session command pipe", true);
  auto sig = MakePipe("session signal pipe", true);
  auto kill = MakePipe("session kill pipe", true);
  for (auto* p : {&cmd, &sig, &kill}) {
    if (!*p) return std::unexpected(p->error());
  }
  d->cmd_r = std::move(cmd->first);
  d->cmd_w = std::move(cmd->second);
  d->sig_r = std::move(sig->first);
  d->sig_w = std::move(sig->second);
  d->kill_r = std::move(kill->first);
  d->kill_w = std::move(kill->second);
  Driver* raw = d.get();
  sandbox::SandboxSpec spec = launch_.spec;
  spec.retain_output = false;
  spec.frames_channel = true;
  spec.stdin_fd = raw->cmd_r.get();
  spec.signal_fd = raw->sig_r.get();
  spec.cancel_fd = raw->kill_r.get();
  spec.on_output = [this, raw](sandbox::Stream s, std::string_view c) { OnOutput(*raw, s, c); };
  spec.on_frames = [this, raw](std::string_view bytes) { OnFrames(*raw, bytes); };
  spec.on_usage = [this, raw](uint64_t cpu, uint64_t mem) { OnUsage(*raw, cpu, mem); };
  {
    std::lock_guard lock(mu_);
    pending_commands_.clear();
    driver_ = std::move(d);
  }
  raw->thread = std::thread([this, raw, spec = std::move(spec)] {
    auto outcome = sandbox_.Run(spec);
    OnExit(*raw, outcome);
  });

  const auto deadline = Clock::now() + timeout;
  std::unique_lock lock(mu_);
  while (!raw->ready && !raw->exited && Clock::now() < deadline) {
    lock.unlock();
    pollfd p{wake_r_.get(), POLLIN, 0};
    auto left = std::chrono::ceil<milliseconds>(deadline - Clock::now()).count();
    (void)::poll(&p, 1, static_cast<int>(std::max<int64_t>(0, left)));
    DrainWake();
    lock.lock();
  }
  if (raw->ready) return {};
  std::string why = raw->exited ? "the " + launch_.language +
                                      " session driver ended before it was "
                                      "ready: " +
                                      raw->exit_reason
                                : "the " + launch_.language + " session driver was not ready " +
                                      "within " + std::to_string(timeout.count()) + " ms";
  StopDriver(lock);
  return Fail(Errc::kInternal, why);
}

void Session::StopDriver(std::unique_lock<std::mutex>& lock) {
  if (!driver_) return;
  std::unique_ptr<Driver> d = std::move(driver_);
  if (!d->exited) d->killed_by_us = true;
  const char b = 1;
  (void)::write(d->kill_w.get(), &b, 1);
  lock.unlock();
  if (d->thread.joinable()) d->thread.join();
  lock.lock();
}

void Session::OnOutput(Driver& d, sandbox::Stream stream, std::string_view chunk) {
  std::lock_guard lock(mu_);
  if (driver_.get() != &d || turn_ == nullptr || turn_->rec == nullptr) return;
  Turn& t = *turn_;
  const uint64_t room = t.output_cap - std::min(t.output_cap, t.output_bytes);
  std::string_view kept = chunk.substr(0, std::min<uint64_t>(room, chunk.size()));
  if (!kept.empty()) {
    t.output_bytes += kept.size();
    t.rec->Emit(stream == sandbox::Stream::kStdout ? Event::Kind::kStdout : Event::Kind::kStderr,
                nullptr, std::string(kept));
  }
  if (kept.size() < chunk.size()) {
    (stream == sandbox::Stream::kStdout ? t.stdout_truncated : t.stderr_truncated) = true;
    if (t.over.empty()) {
      t.over = "output";
      Signal(SIGINT);
      Wake();
    }
  }
}

void Session::OnFrames(Driver& d, std::string_view bytes) {
  std::vector<json> frames;
  {
    std::lock_guard lock(mu_);
    if (driver_.get() != &d || d.frames_refused) return;
    d.frame_buf.append(bytes);
    size_t start = 0;
    bool too_long = false;
    for (size_t nl; (nl = d.frame_buf.find('\n', start)) != std::string::npos; start = nl + 1) {
      if (nl - start > kMaxFrameBytes) {
        too_long = true;  // what the driver wrote after it does not count (frames_refused)
        break;
      }
      json f = json::parse(d.frame_buf.begin() + static_cast<std::ptrdiff_t>(start),
                           d.frame_buf.begin() + static_cast<std::ptrdiff_t>(nl), nullptr, false);
      if (f.is_object() && f.contains("type") && f["type"].is_string()) {
        frames.push_back(std::move(f));
      }
    }
    d.frame_buf.erase(0, start);
    if (too_long || d.frame_buf.size() > kMaxFrameBytes) {
      d.frame_buf.clear();
      d.frames_refused = true;
      d.exit_reason =
          "the driver wrote a frame longer than " + std::to_string(kMaxFrameBytes >> 20) + " MiB";
      d.killed_by_us = true;
      const char b = 1;
      (void)::write(d.kill_w.get(), &b, 1);
    }
  }
  for (const auto& f : frames) OnFrame(f);
}

void Session::OnFrame(const json& f) {
  std::lock_guard lock(mu_);
  if (!driver_) return;
  const std::string type = f["type"];
  if (type == "ready") {
    driver_->ready = true;
    Wake();
    return;
  }
  if (turn_ == nullptr) return;  // nobody asked: a stray or forged frame
  Turn& t = *turn_;
  if (t.rec != nullptr) {
    if (type == "display") {
      json display = {
          {"data", BundleOf(f)},
          {"metadata",
           f.contains("metadata") && f["metadata"].is_object() ? f["metadata"] : json::object()}};
      // Rich output counts against the execution's output limit like the streams.
      const uint64_t size = display.dump(-1, ' ', false, kReplace).size();
      if (t.output_bytes + size > t.output_cap) {
        t.output_bytes = t.output_cap;
        if (t.over.empty()) {
          t.over = "output";
          Signal(SIGINT);
          Wake();
        }
        return;
      }
      t.output_bytes += size;
      t.rec->Emit(Event::Kind::kDisplay, std::move(display));
    } else if (type == "result") {
      t.result = BundleOf(f);
    } else if (type == "error") {
      t.error = ErrorFromFrame(f, t.rec->id());
    } else if (type == "input_request") {
      t.input_pending = true;
      t.rec->Emit(
          Event::Kind::kStatus,
          {{"input_request",
            {{"prompt", f.value("prompt", "")}, {"password", f.value("password", false)}}}});
      Wake();
    } else if (type == "done" && f.value("id", "") == t.command_id) {
      t.done = true;
      t.done_status = f.value("status", "ok");
      Wake();
    }
    return;
  }
  if (type.ends_with("_reply") && f.value("id", "") == t.command_id) {
    t.reply = f;
    t.done = true;
    Wake();
  }
}

void Session::OnUsage(Driver& d, uint64_t cpu_ns, uint64_t memory_peak) {
  std::lock_guard lock(mu_);
  if (driver_.get() != &d) return;
  d.cpu_ns = cpu_ns;
  d.memory_peak = memory_peak;
  info_.memory_bytes = std::max(info_.memory_bytes, memory_peak);
  if (turn_ != nullptr && turn_->rec != nullptr && turn_->over.empty() &&
      cpu_ns - std::min(cpu_ns, turn_->cpu_start_ns) > turn_->cpu_limit_ns) {
    turn_->over = "cpu_time";
    Signal(SIGINT);
    Wake();
  }
}

void Session::OnExit(Driver& d, const Result<sandbox::SandboxOutcome>& outcome) {
  bool was_current = false;
  {
    std::lock_guard lock(mu_);
    d.exited = true;
    if (!outcome) {
      d.exit_reason = "sandbox: " + outcome.error().message();
      d.termination = sandbox::Termination::kSetupFailed;
    } else {
      d.termination = outcome->termination;
      d.memory_peak = std::max(d.memory_peak, outcome->memory_peak_bytes);
      if (d.exit_reason.empty()) {
        switch (outcome->termination) {
          case sandbox::Termination::kMemoryLimit:
            d.exit_reason = "the session ran out of memory (limit " +
                            FormatOptionNumber(languages::DeclOf(Limit::kMemory),
                                               launch_.limits.Get(Limit::kMemory)) +
                            ")";
            break;
          case sandbox::Termination::kWallTimeout:
            d.exit_reason = "the session reached its lifetime";
            break;
          case sandbox::Termination::kCpuTimeout:
            d.exit_reason = "the session used up its CPU time";
            break;
          case sandbox::Termination::kSignaled:
            d.exit_reason =
                "the session's driver was killed by signal " + std::to_string(outcome->signal);
            break;
          case sandbox::Termination::kSetupFailed:
          case sandbox::Termination::kExecFailed:
            d.exit_reason = "sandbox: " + outcome->setup_error;
            break;
          default:
            d.exit_reason =
                "the session's driver exited with status " + std::to_string(outcome->exit_code);
        }
      }
    }
    was_current = driver_.get() == &d;
  }
  if (was_current) Wake();
}

void Session::SendLocked(const json& command) {
  // A driver that is gone gets nothing: its end reaches the waiter through OnExit.
  if (!driver_ || driver_->exited) return;
  pending_commands_ += command.dump(-1, ' ', false, kReplace);
  pending_commands_ += '\n';
  FlushCommands();
}

bool Session::FlushCommands() {
  while (!pending_commands_.empty() && driver_) {
    ssize_t n = ::write(driver_->cmd_w.get(), pending_commands_.data(), pending_commands_.size());
    if (n > 0) {
      pending_commands_.erase(0, static_cast<size_t>(n));
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      break;  // EAGAIN: the driver is not reading yet; EPIPE: it is gone (OnExit tells)
    }
  }
  return pending_commands_.empty();
}

ExecutionResult Session::Execute(const ExecutionRequest& req, const EventSink& sink) {
  const bool admitted = !req.id.empty();
  EventRecorder rec(admitted ? req.id : NewExecutionId(), sink,
                    admitted ? req.queued_at : Clock::now());
  ExecutionRequest shown;
  shown.language = launch_.language;
  shown.labels = req.labels;
  shown.session_id = id_;
  rec.Emit(Event::Kind::kQueued, QueuedPayload(shown, admitted ? req.created_at : NowRfc3339()));
  json final_extra = {{"language", launch_.language}, {"version", launch_.version}};
  auto finish = [&](Status status, std::string reason, json extra) {
    extra["status"] = StatusName(status);
    extra["reason"] = std::move(reason);
    extra["finished_at"] = NowRfc3339();
    rec.Emit(Event::Kind::kFinished, std::move(extra));
    return rec.Result();
  };

  auto resolved = ExecutionLimits(req.limits);
  if (!resolved) return finish(Status::kRejected, resolved.error().message(), final_extra);
  const languages::LimitSet& limits = *resolved;
  final_extra["limits"] = LimitsToJson(limits);
  if (req.code.empty()) return finish(Status::kRejected, "code: required", final_extra);
  if (!req.files.empty()) {
    return finish(Status::kRejected,
                  "files: a session execution takes code only (give files when creating the "
                  "session)",
                  final_extra);
  }

  std::unique_lock lock(mu_);
  turn_cv_.wait(lock, [&] { return !turn_taken_ || closed_; });
  if (closed_) {
    return finish(Status::kRejected, "session: " + id_ + " has ended: " + info_.ended_reason,
                  final_extra);
  }
  turn_taken_ = true;
  info_.state = State::kBusy;
  std::string restart_note;
  if (!driver_ || driver_->exited) {
    std::string why = driver_ ? driver_->exit_reason : "no driver";
    StopDriver(lock);
    lock.unlock();
    auto launched = Launch(milliseconds(30000));
    if (observer_) observer_("restarted", why);
    lock.lock();
    ++info_.restarts;
    if (!launched) {
      turn_taken_ = false;
      info_.state = State::kIdle;
      turn_cv_.notify_one();
      return finish(Status::kInternalError, launched.error().message(), final_extra);
    }
    restart_note = "the session was restarted before this execution (" + why + ")";
  }

  Turn t;
  t.rec = &rec;
  t.command_id = rec.id();
  t.output_cap = limits.Get(Limit::kOutput);
  t.cpu_limit_ns = limits.Get(Limit::kCpuTime) * 1'000'000;
  t.cpu_start_ns = driver_->cpu_ns;
  turn_ = &t;
  const auto start = Clock::now();
  rec.Emit(Event::Kind::kStarted, {{"started_at", NowRfc3339()},
                                   {"limits", LimitsToJson(limits)},
                                   {"compile_limits", nullptr},
                                   {"version", launch_.version}});
  SendLocked({{"type", "execute"}, {"id", t.command_id}, {"code", req.code}});

  const auto wall_deadline = start + milliseconds(limits.Get(Limit::kWallTime));
  std::optional<Clock::time_point> grace;
  std::string_view stdin_left = req.stdin_data;
  std::string line_buf;
  bool stdin_eof = req.stdin_fd < 0;
  bool killed = false;
  auto interrupt = [&](const char* why) {
    if (t.over.empty()) t.over = why;
    if (!grace) {
      Signal(SIGINT);
      grace = Clock::now() + kInterruptGrace;
    }
  };
  Driver* driver = driver_.get();
  for (;;) {
    if (t.done || driver->exited) break;
    const auto now = Clock::now();
    if (now >= wall_deadline) interrupt("wall_time");
    if (!t.over.empty() && !grace) interrupt(t.over.c_str());
    if (grace && now >= *grace) {
      killed = true;
      StopDriver(lock);
      break;
    }
    if (t.input_pending) {
      // One line per request: from the request's stdin first, then the live stdin pipe.
      std::optional<json> reply;
      if (auto nl = line_buf.find('\n'); nl != std::string::npos) {
        reply = json{{"type", "input_reply"}, {"value", line_buf.substr(0, nl)}};
        line_buf.erase(0, nl + 1);
      } else if (!stdin_left.empty()) {
        auto nl2 = stdin_left.find('\n');
        std::string_view line = stdin_left.substr(0, nl2);
        reply = json{{"type", "input_reply"}, {"value", std::string(line)}};
        stdin_left.remove_prefix(nl2 == std::string_view::npos ? stdin_left.size() : nl2 + 1);
      } else if (stdin_eof) {
        reply = line_buf.empty()
                    ? json{{"type", "input_reply"}, {"eof", true}}
                    : json{{"type", "input_reply"}, {"value", std::exchange(line_buf, {})}};
      }
      if (reply) {
        t.input_pending = false;
        SendLocked(*reply);
      }
    }
    pollfd fds[4];
    nfds_t n = 0;
    fds[n++] = {wake_r_.get(), POLLIN, 0};
    const int idx_cancel = req.cancel_fd >= 0 && t.over != "cancelled" ? static_cast<int>(n) : -1;
    if (idx_cancel >= 0) fds[n++] = {req.cancel_fd, POLLIN, 0};
    const int idx_in = t.input_pending && !stdin_eof ? static_cast<int>(n) : -1;
    if (idx_in >= 0) fds[n++] = {req.stdin_fd, POLLIN, 0};
    const int idx_cmd = !pending_commands_.empty() ? static_cast<int>(n) : -1;
    if (idx_cmd >= 0) fds[n++] = {driver->cmd_w.get(), POLLOUT, 0};
    auto until = grace ? std::min(*grace, wall_deadline) : wall_deadline;
    auto left = std::chrono::ceil<milliseconds>(until - now).count();
    lock.unlock();
    (void)::poll(fds, n, static_cast<int>(std::clamp<int64_t>(left, 0, 1000)));
    char buf[4096];
    DrainWake();
    std::string input;
    if (idx_in >= 0 && fds[idx_in].revents != 0) {
      // `lock` was released before poll; the analyzer does not model unique_lock::unlock().
      // NOLINTNEXTLINE(clang-analyzer-unix.BlockInCriticalSection)
      ssize_t r = ::read(req.stdin_fd, buf, sizeof buf);
      if (r > 0) input.assign(buf, static_cast<size_t>(r));
      if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) stdin_eof = true;
    }
    lock.lock();
    line_buf += input;
    if (idx_cancel >= 0 && fds[idx_cancel].revents != 0) {
      t.over = "cancelled";
      interrupt("cancelled");
    }
    if (idx_cmd >= 0) FlushCommands();
  }
  turn_ = nullptr;
  const uint64_t cpu_ns = driver_ ? driver_->cpu_ns : 0;
  const bool died = !killed && driver_ && driver_->exited;
  const std::string death = died ? driver_->exit_reason : "";
  const auto termination = died ? driver_->termination : sandbox::Termination::kExited;
  final_extra["usage"] = ToJson(Usage{MsBetween(start, Clock::now()),
                                      (cpu_ns - std::min(cpu_ns, t.cpu_start_ns)) / 1'000'000,
                                      info_.memory_bytes, "session"});
  if (t.error) final_extra["error"] = ToJson(*t.error);
  final_extra["truncated"] = {{"stdout", t.stdout_truncated}, {"stderr", t.stderr_truncated}};
  if (!t.result.is_null()) final_extra["result"] = t.result;
  ++info_.executions;
  info_.last_active = Clock::now();
  info_.last_active_at = NowRfc3339();

  Status status = Status::kOk;
  std::string reason = "the execution completed";
  static const std::map<std::string, std::pair<Status, std::string>> kOverText = {
      {"wall_time", {Status::kTimeout, "it exceeded its wall-time limit"}},
      {"cpu_time", {Status::kTimeout, "it exceeded its CPU-time limit"}},
      {"output", {Status::kOutputLimit, "it exceeded its output limit"}},
      {"cancelled", {Status::kCancelled, "it was cancelled"}},
      {"interrupt", {Status::kCancelled, "it was interrupted"}},
  };
  if (!t.over.empty()) {
    const auto& [st, text] = kOverText.at(t.over);
    status = st;
    if (t.over == "wall_time" || t.over == "cpu_time" || t.over == "output") {
      final_extra["limit"] = t.over;
    }
    reason = killed ? text +
                          " and did not stop when interrupted; the session was restarted and "
                          "its state is lost"
             : died ? text + "; then " + death + ", and the session was restarted"
                    : text + "; interrupted, the session keeps its state";
  } else if (died) {
    status = termination == sandbox::Termination::kMemoryLimit ? Status::kMemoryLimit
                                                               : Status::kRuntimeError;
    if (status == Status::kMemoryLimit) final_extra["limit"] = "memory";
    reason = death + "; the session will restart with its state lost";
  } else if (t.done_status == "error") {
    status = Status::kRuntimeError;
    reason = t.error ? t.error->name + ": " + t.error->message : "the code raised an error";
  } else if (t.done_status == "interrupted") {
    status = Status::kCancelled;
    reason = "it was interrupted; the session keeps its state";
  }
  if (!restart_note.empty()) reason += " (" + restart_note + ")";
  ExecutionResult result = finish(status, reason, final_extra);

  if ((killed || died) && !closed_) {
    // A fresh driver now, so the next execution does not pay for it and the client hears now.
    std::string why = killed ? "an execution did not stop when interrupted" : death;
    bool lifetime_over = died && termination == sandbox::Termination::kWallTimeout;
    StopDriver(lock);
    if (lifetime_over) {
      closed_ = true;
      info_.state = State::kDead;
      info_.ended_reason = death;
      lock.unlock();
      if (observer_) observer_("ended", death);
      lock.lock();
    } else {
      lock.unlock();
      auto launched = Launch(milliseconds(30000));
      if (observer_) observer_("restarted", why);
      lock.lock();
      ++info_.restarts;
      (void)launched;  // a failure shows on the next execution, which tries again
    }
  }
  turn_taken_ = false;
  if (info_.state != State::kDead) info_.state = State::kIdle;
  turn_cv_.notify_one();
  return result;
}

Result<languages::LimitSet> Session::ExecutionLimits(const languages::LimitSet& asked) const {
  languages::LimitSet limits = launch_.limits;
  for (size_t i = 0; i < languages::kLimitCount; ++i) {
    const auto l = static_cast<Limit>(i);
    const auto& v = asked[l];
    if (!v) continue;
    const auto& decl = languages::DeclOf(l);
    const std::string field = "limits." + std::string(decl.name);
    if (!PerExecutionLimit(l)) {
      return Fail(Errc::kInvalidArgument,
                  field + ": applies to the whole session; set it when creating the session");
    }
    if (*v > limits.Get(l)) {
      return Fail(Errc::kInvalidArgument, field + ": " + FormatOptionNumber(decl, *v) +
                                              " is above the session's " +
                                              FormatOptionNumber(decl, limits.Get(l)));
    }
    limits[l] = v;
  }
  return limits;
}

Result<void> Session::Interrupt() {
  std::lock_guard lock(mu_);
  if (closed_) return Fail(Errc::kInvalidArgument, "session " + id_ + " has ended");
  if (turn_ == nullptr || turn_->rec == nullptr) {
    return Fail(Errc::kInvalidArgument, "session " + id_ + " is not running anything");
  }
  if (turn_->over.empty()) turn_->over = "interrupt";
  Wake();
  return {};
}

Result<void> Session::Restart(const std::string& reason) {
  std::unique_lock lock(mu_);
  turn_cv_.wait(lock, [&] { return !turn_taken_ || closed_; });
  if (closed_) return Fail(Errc::kInvalidArgument, "session " + id_ + " has ended");
  turn_taken_ = true;
  info_.state = State::kStarting;
  StopDriver(lock);
  lock.unlock();
  auto launched = Launch(milliseconds(30000));
  if (observer_) observer_("restarted", reason);
  lock.lock();
  ++info_.restarts;
  turn_taken_ = false;
  info_.state = launched ? State::kIdle : State::kDead;
  turn_cv_.notify_one();
  return launched;
}

void Session::Close(const std::string& reason) {
  std::unique_lock lock(mu_);
  if (closed_ && !driver_) return;
  const bool was_open = !closed_;
  closed_ = true;
  if (turn_ != nullptr && turn_->over.empty()) turn_->over = "cancelled";
  turn_cv_.notify_all();
  // A running execution sees the driver die and finishes; then the driver is stopped here.
  if (turn_taken_) Wake();
  turn_cv_.wait(lock, [&] { return !turn_taken_; });
  StopDriver(lock);
  info_.state = State::kDead;
  if (info_.ended_reason.empty()) info_.ended_reason = reason;
  lock.unlock();
  if (was_open && observer_) observer_("ended", reason);
}

Result<json> Session::Query(json command, milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::unique_lock lock(mu_);
  if (!turn_cv_.wait_until(lock, deadline, [&] { return !turn_taken_ || closed_; })) {
    return Fail(Errc::kBusy, "session " + id_ + " stayed busy");
  }
  if (closed_) return Fail(Errc::kInvalidArgument, "session " + id_ + " has ended");
  if (!driver_ || driver_->exited) {
    return Fail(Errc::kInvalidArgument, "session " + id_ + " is restarting");
  }
  turn_taken_ = true;
  Turn t;
  t.command_id = "q" + std::to_string(info_.executions) + "-" + NewExecutionId();
  command["id"] = t.command_id;
  turn_ = &t;
  SendLocked(command);
  Driver* driver = driver_.get();
  while (!t.done && !driver->exited && Clock::now() < deadline) {
    pollfd fds[2] = {{wake_r_.get(), POLLIN, 0}, {driver->cmd_w.get(), POLLOUT, 0}};
    const nfds_t n = pending_commands_.empty() ? 1 : 2;
    auto left = std::chrono::ceil<milliseconds>(deadline - Clock::now()).count();
    lock.unlock();
    (void)::poll(fds, n, static_cast<int>(std::max<int64_t>(0, left)));
    DrainWake();
    lock.lock();
    FlushCommands();
  }
  turn_ = nullptr;
  turn_taken_ = false;
  turn_cv_.notify_one();
  if (!t.done) {
    return Fail(Errc::kTimeout, "session " + id_ + ": no reply to " +
                                    command.value("type", std::string("the query")));
  }
  t.reply.erase("id");
  return t.reply;
}

Session::Info Session::info() const {
  std::lock_guard lock(mu_);
  return info_;
}

}  // namespace polyrun::engine
