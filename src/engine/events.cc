#include "engine/events.h"

#include "engine/result_json.h"

namespace polyrun::engine {

using nlohmann::json;

std::string_view EventKindName(Event::Kind kind) {
  switch (kind) {
    case Event::Kind::kQueued:
      return "queued";
    case Event::Kind::kStarted:
      return "started";
    case Event::Kind::kCompileStarted:
      return "compile_started";
    case Event::Kind::kCompileOutput:
      return "compile_output";
    case Event::Kind::kCompileFinished:
      return "compile_finished";
    case Event::Kind::kStdout:
      return "stdout";
    case Event::Kind::kStderr:
      return "stderr";
    case Event::Kind::kDisplay:
      return "display";
    case Event::Kind::kStatus:
      return "status";
    case Event::Kind::kFinished:
      return "finished";
  }
  return "?";
}

std::optional<Event::Kind> EventKindFromName(std::string_view name) {
  for (int i = 0; i <= static_cast<int>(Event::Kind::kFinished); ++i) {
    if (EventKindName(static_cast<Event::Kind>(i)) == name) return static_cast<Event::Kind>(i);
  }
  return std::nullopt;
}

void Apply(ExecutionResult& r, const Event& e) {
  const json& p = e.payload;
  switch (e.kind) {
    case Event::Kind::kQueued:
      r.id = e.execution_id;
      r.status = Status::kQueued;
      r.language = p.value("language", "");
      r.version = p.value("version", "");
      r.created_at = p.value("created_at", "");
      r.session_id = p.value("session_id", "");
      if (p.contains("labels")) r.labels = p["labels"].get<std::map<std::string, std::string>>();
      break;
    case Event::Kind::kStarted:
      r.status = Status::kRunning;
      r.started_at = p.value("started_at", "");
      if (p.contains("limits")) r.limits = LimitsFromJson(p["limits"]);
      if (p.contains("compile_limits")) r.compile_limits = LimitsFromJson(p["compile_limits"]);
      if (p.contains("version")) r.version = p["version"];
      break;
    case Event::Kind::kCompileStarted:
      r.compile = StageResult{};
      break;
    case Event::Kind::kCompileOutput:
      if (!r.compile) r.compile = StageResult{};
      (e.stream == "stderr" ? r.compile->stderr_text : r.compile->stdout_text) += e.data;
      break;
    case Event::Kind::kCompileFinished: {
      StageResult s = StageFromJson(p);
      // Output arrived as compile_output events; the payload carries everything else.
      if (r.compile) {
        s.stdout_text = std::move(r.compile->stdout_text);
        s.stderr_text = std::move(r.compile->stderr_text);
      }
      r.compile = std::move(s);
      break;
    }
    case Event::Kind::kStdout:
    case Event::Kind::kStderr: {
      const bool out = e.kind == Event::Kind::kStdout;
      (out ? r.stdout_text : r.stderr_text) += e.data;
      if (!r.outputs.empty() && r.outputs.back().stream == (out ? "stdout" : "stderr")) {
        r.outputs.back().text += e.data;
      } else {
        r.outputs.push_back({out ? "stdout" : "stderr", e.data, e.t_ms, nullptr});
      }
      break;
    }
    case Event::Kind::kDisplay:
      r.outputs.push_back({"",
                           "",
                           e.t_ms,
                           {{"data", p.value("data", json::object())},
                            {"metadata", p.value("metadata", json::object())}}});
      break;
    case Event::Kind::kStatus:
      if (auto s = StatusFromName(p.value("status", ""))) r.status = *s;
      break;
    case Event::Kind::kFinished:
      r.status =
          StatusFromName(p.value("status", "internal_error")).value_or(Status::kInternalError);
      r.limit = p.value("limit", "");
      r.reason = p.value("reason", "");
      if (p.contains("exit_code") && p["exit_code"].is_number())
        r.exit_code = p["exit_code"].get<int>();
      r.signal = p.value("signal", 0);
      if (p.contains("truncated")) {
        r.stdout_truncated = p["truncated"].value("stdout", false);
        r.stderr_truncated = p["truncated"].value("stderr", false);
      }
      if (p.contains("error") && p["error"].is_object()) r.error = ErrorFromJson(p["error"]);
      if (p.contains("usage")) r.usage = UsageFromJson(p["usage"]);
      if (p.contains("limits")) r.limits = LimitsFromJson(p["limits"]);
      if (p.contains("language")) r.language = p["language"];
      if (p.contains("version")) r.version = p["version"];
      r.finished_at = p.value("finished_at", "");
      if (p.contains("result")) r.result = p["result"];
      break;
  }
}

void EventRecorder::Emit(Event::Kind kind, json payload, std::string data, std::string stream) {
  Event e;
  e.execution_id = id_;
  e.seq = events_.size() + 1;
  e.t_ms = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::steady_clock::now() - start_)
                                     .count());
  e.kind = kind;
  e.payload = std::move(payload);
  e.data = std::move(data);
  e.stream = std::move(stream);
  if (sink_) sink_(e);
  events_.push_back(std::move(e));
}

ExecutionResult Fold(const std::vector<Event>& events) {
  ExecutionResult r;
  for (const auto& e : events) Apply(r, e);
  return r;
}

json EventToJson(const Event& e) {
  json j = {{"execution_id", e.execution_id},
            {"seq", e.seq},
            {"t_ms", e.t_ms},
            {"type", EventKindName(e.kind)}};
  if (!e.stream.empty()) j["stream"] = e.stream;
  if (e.kind == Event::Kind::kStdout || e.kind == Event::Kind::kStderr ||
      e.kind == Event::Kind::kCompileOutput) {
    j["data"] = e.data;
  }
  if (!e.payload.is_null()) j["payload"] = e.payload;
  return j;
}

}  // namespace polyrun::engine
