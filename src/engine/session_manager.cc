#include "engine/session_manager.h"

#include <algorithm>
#include <cstdio>

#include "engine/execution_service.h"
#include "engine/result_json.h"

namespace polyrun::engine {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

std::string NewSessionId() {
  return "se_" + NewExecutionId().substr(3);
}

SessionManager::SessionManager(Engine& engine, store::Store* store, Options options)
    : engine_(engine), store_(store), options_(options) {
  reaper_ = std::thread([this] { Reaper(); });
}

SessionManager::~SessionManager() {
  Shutdown();
}

void SessionManager::Record(const std::string& id, const std::string& what, Status status,
                            const std::string& reason) {
  if (store_ == nullptr) return;
  std::lock_guard lock(record_mu_);
  Event e;
  e.execution_id = id;
  e.seq = ++next_seq_[id];
  e.t_ms = 0;
  Result<void> stored;
  if (what == "ended") {
    e.kind = Event::Kind::kFinished;
    e.payload = {{"status", StatusName(status)}, {"reason", reason}, {"finished_at", NowRfc3339()}};
    json result = {{"id", id}, {"status", StatusName(status)}, {"reason", reason}};
    stored = store_->Finish(id, std::string(StatusName(status)), e.payload["finished_at"],
                            result.dump(), {ToRecord(e)});
    next_seq_.erase(id);
  } else {
    e.kind = Event::Kind::kStatus;
    e.payload = {{"session", what}, {"reason", reason}};
    stored = store_->Append({ToRecord(e)}, {});
  }
  if (!stored) std::fprintf(stderr, "polyrun: store: %s\n", stored.error().message().c_str());
}

Result<std::shared_ptr<Session>> SessionManager::Create(const SessionRequest& request,
                                                        const std::string& exclusive_label,
                                                        const std::string& api_key) {
  milliseconds lifetime =
      request.lifetime.count() > 0 ? request.lifetime : options_.default_lifetime;
  if (lifetime > options_.max_lifetime) {
    return Fail(Errc::kInvalidArgument, "lifetime: " + std::to_string(lifetime.count()) +
                                            " ms is above this server's " +
                                            std::to_string(options_.max_lifetime.count()) + " ms");
  }
  const milliseconds idle =
      request.idle_timeout.count() > 0 ? request.idle_timeout : options_.default_idle_timeout;
  if (!exclusive_label.empty() && !request.labels.contains(exclusive_label)) {
    return Fail(Errc::kInvalidArgument,
                "exclusive: the session has no label \"" + exclusive_label + "\"");
  }
  auto launch = engine_.PrepareSession(request, lifetime);
  if (!launch) return std::unexpected(launch.error());

  const std::string id = NewSessionId();
  {
    std::lock_guard lock(mu_);
    if (stopping_) return Fail(Errc::kUnavailable, "sessions: shutting down");
    if (sessions_.size() + starting_ >= options_.max_sessions) {
      return Fail(Errc::kBusy, "sessions: this server's maximum of " +
                                   std::to_string(options_.max_sessions) +
                                   " live sessions is reached");
    }
    if (!exclusive_label.empty()) {
      const std::string& value = request.labels.at(exclusive_label);
      auto holds = [&](const std::map<std::string, std::string>& labels) {
        auto it = labels.find(exclusive_label);
        return it != labels.end() && it->second == value;
      };
      for (const auto& [other, entry] : sessions_) {
        if (holds(entry.labels)) {
          return Fail(Errc::kConflict, "exclusive: session " + other + " already has " +
                                           exclusive_label + "=" + value);
        }
      }
      for (const auto& [other, labels] : pending_) {
        if (holds(labels)) {
          return Fail(Errc::kConflict, "exclusive: session " + other + " (starting) already has " +
                                           exclusive_label + "=" + value);
        }
      }
    }
    ++starting_;
    pending_[id] = request.labels;
  }
  auto unstart = [&] {
    std::lock_guard lock(mu_);
    --starting_;
    pending_.erase(id);
  };

  if (store_ != nullptr) {
    store::ExecutionRecord rec;
    rec.id = id;
    rec.language = launch->language;
    rec.status = std::string(StatusName(Status::kRunning));
    rec.labels = request.labels;
    rec.api_key = api_key;
    rec.created_at = NowRfc3339();
    Event queued;
    queued.execution_id = id;
    queued.seq = 1;
    queued.kind = Event::Kind::kQueued;
    queued.payload = {{"language", launch->language},
                      {"labels", request.labels},
                      {"created_at", rec.created_at},
                      {"session_id", id}};
    Event started = queued;
    started.seq = 2;
    started.kind = Event::Kind::kStarted;
    started.payload = {{"started_at", rec.created_at},
                       {"limits", LimitsToJson(launch->limits)},
                       {"version", launch->version},
                       {"lifetime_ms", lifetime.count()},
                       {"idle_timeout_ms", idle.count()}};
    if (auto begun = store_->Begin(rec, {ToRecord(queued), ToRecord(started)}); !begun) {
      unstart();
      return std::unexpected(begun.error());
    }
    std::lock_guard lock(record_mu_);
    next_seq_[id] = 2;
  }

  auto observer = [this, id](const std::string& what, const std::string& reason) {
    if (what == "started") return;
    Status status = Status::kOk;
    if (what == "ended") {
      std::lock_guard lock(mu_);
      auto it = sessions_.find(id);
      // Not closed through us: the session itself ended (its lifetime).
      if (it == sessions_.end() || !closing_.contains(id)) status = Status::kTimeout;
      if (auto c = closing_.find(id); c != closing_.end()) {
        status = c->second;
        closing_.erase(c);
      }
      sessions_.erase(id);
      cv_.notify_all();
    }
    Record(id, what, status, reason);
  };
  auto session =
      Session::Start(engine_.sandbox(), std::move(*launch), id, observer, options_.start_timeout);
  std::unique_lock lock(mu_);
  --starting_;
  pending_.erase(id);
  if (!session) {
    lock.unlock();
    Record(id, "ended", Status::kInternalError, session.error().message());
    return std::unexpected(session.error());
  }
  sessions_[id] = {*session, request.labels, idle};
  if (stopping_) {
    // Shutdown began while the driver started: it would not close this one.
    closing_.emplace(id, Status::kCancelled);
    lock.unlock();
    (*session)->Close("the server shut down");
    return Fail(Errc::kUnavailable, "sessions: shutting down");
  }
  cv_.notify_all();
  return *session;
}

std::shared_ptr<Session> SessionManager::Find(const std::string& id) {
  std::lock_guard lock(mu_);
  auto it = sessions_.find(id);
  return it == sessions_.end() ? nullptr : it->second.session;
}

std::vector<Session::Info> SessionManager::List() {
  std::vector<std::shared_ptr<Session>> all;
  {
    std::lock_guard lock(mu_);
    for (const auto& [_, e] : sessions_) all.push_back(e.session);
  }
  std::vector<Session::Info> out;
  out.reserve(all.size());
  for (const auto& s : all) out.push_back(s->info());
  return out;
}

Result<void> SessionManager::Close(const std::string& id, const std::string& reason) {
  std::shared_ptr<Session> s;
  {
    std::lock_guard lock(mu_);
    auto it = sessions_.find(id);
    if (it == sessions_.end()) return Fail(Errc::kNotFound, "session " + id + " not found");
    s = it->second.session;
    closing_.emplace(id, Status::kOk);
  }
  s->Close(reason);
  return {};
}

ExecutionResult SessionManager::Execute(const ExecutionRequest& request, const EventSink& sink) {
  if (auto s = Find(request.session_id)) return s->Execute(request, sink);
  // Unknown or ended: recorded like any rejected request.
  const bool admitted = !request.id.empty();
  EventRecorder rec(admitted ? request.id : NewExecutionId(), sink,
                    admitted ? request.queued_at : Clock::now());
  rec.Emit(Event::Kind::kQueued,
           QueuedPayload(request, admitted ? request.created_at : NowRfc3339()));
  rec.Emit(Event::Kind::kFinished, {{"status", StatusName(Status::kRejected)},
                                    {"reason", "session_id: no live session " + request.session_id},
                                    {"finished_at", NowRfc3339()}});
  return rec.Result();
}

void SessionManager::Reaper() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    auto next = Clock::now() + std::chrono::seconds(60);
    std::vector<std::shared_ptr<Session>> idle;
    for (const auto& [id, e] : sessions_) {
      Session::Info info = e.session->info();
      if (info.state != Session::State::kIdle) {
        // Busy now; its idle time starts when the execution ends: look again by then.
        next = std::min(next, Clock::now() + std::min(e.idle_timeout, milliseconds(1000)));
        continue;
      }
      const auto expires = info.last_active + e.idle_timeout;
      if (expires <= Clock::now()) {
        idle.push_back(e.session);
        closing_.emplace(id, Status::kTimeout);
      } else {
        next = std::min(next, expires);
      }
    }
    if (!idle.empty()) {
      lock.unlock();
      for (const auto& s : idle) {
        s->Close("idle for longer than its idle timeout");
      }
      lock.lock();
      continue;
    }
    cv_.wait_until(lock, next);
  }
}

void SessionManager::Shutdown() {
  std::vector<std::shared_ptr<Session>> all;
  {
    std::lock_guard lock(mu_);
    if (stopping_ && !reaper_.joinable()) return;
    stopping_ = true;
    for (const auto& [id, e] : sessions_) {
      all.push_back(e.session);
      closing_.emplace(id, Status::kCancelled);
    }
  }
  cv_.notify_all();
  if (reaper_.joinable()) reaper_.join();
  for (const auto& s : all) s->Close("the server shut down");
}

}  // namespace polyrun::engine
