#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "engine/result.h"

namespace polyrun::engine {

// DESIGN §4 events. `data` carries output bytes for stdout/stderr/compile_output; `payload`
// carries the structured fields of the other kinds.
struct Event {
  enum class Kind {
    kQueued,
    kStarted,
    kCompileStarted,
    kCompileOutput,
    kCompileFinished,
    kStdout,
    kStderr,
    kDisplay,
    kStatus,
    kFinished,
  };
  std::string execution_id;
  uint64_t seq = 0;
  uint64_t t_ms = 0;  // monotonic, since queued
  Kind kind = Kind::kQueued;
  std::string stream;  // compile_output: "stdout"/"stderr"
  std::string data;
  nlohmann::json payload;
};

std::string_view EventKindName(Event::Kind kind);
std::optional<Event::Kind> EventKindFromName(std::string_view name);

// Receives events in order: on the thread running the execution, or for a session execution
// also on the session's supervising thread with the session locked, so a sink must not call
// back into the session or block for long.
using EventSink = std::function<void(const Event&)>;

// The result is a fold of the events: applying them in order reproduces it exactly.
ExecutionResult Fold(const std::vector<Event>& events);
void Apply(ExecutionResult& result, const Event& event);

nlohmann::json EventToJson(const Event& e);

// Collects the events of one execution, numbers and timestamps them, hands each to the
// caller's sink and keeps them for the fold. Not thread-safe: one emitter at a time.
class EventRecorder {
 public:
  EventRecorder(std::string id, const EventSink& sink, std::chrono::steady_clock::time_point start)
      : id_(std::move(id)), sink_(sink), start_(start) {}

  void Emit(Event::Kind kind, nlohmann::json payload = nullptr, std::string data = {},
            std::string stream = {});
  ExecutionResult Result() const { return Fold(events_); }
  const std::string& id() const { return id_; }
  std::chrono::steady_clock::time_point start() const { return start_; }

 private:
  std::string id_;
  const EventSink& sink_;
  std::chrono::steady_clock::time_point start_;
  std::vector<Event> events_;
};

}  // namespace polyrun::engine
