#include "engine/result_json.h"

namespace polyrun::engine {

using nlohmann::json;

std::string_view StatusName(Status s) {
  switch (s) {
    case Status::kQueued:
      return "queued";
    case Status::kRunning:
      return "running";
    case Status::kOk:
      return "ok";
    case Status::kRuntimeError:
      return "runtime_error";
    case Status::kCompileError:
      return "compile_error";
    case Status::kTimeout:
      return "timeout";
    case Status::kMemoryLimit:
      return "memory_limit";
    case Status::kOutputLimit:
      return "output_limit";
    case Status::kCancelled:
      return "cancelled";
    case Status::kRejected:
      return "rejected";
    case Status::kInternalError:
      return "internal_error";
  }
  return "internal_error";
}

std::optional<Status> StatusFromName(std::string_view name) {
  for (int i = 0; i <= static_cast<int>(Status::kInternalError); ++i) {
    if (StatusName(static_cast<Status>(i)) == name) return static_cast<Status>(i);
  }
  return std::nullopt;
}

json ToJson(const languages::ErrorInfo& e) {
  json tb = json::array();
  for (const auto& f : e.traceback) {
    tb.push_back({{"file", f.file},
                  {"line", f.line},
                  {"column", f.column ? json(f.column) : json(nullptr)},
                  {"function", f.function}});
  }
  return {{"type", e.type},
          {"name", e.name},
          {"message", e.message},
          {"file", e.file.empty() ? json(nullptr) : json(e.file)},
          {"line", e.line ? json(e.line) : json(nullptr)},
          {"column", e.column ? json(e.column) : json(nullptr)},
          {"traceback", tb}};
}

languages::ErrorInfo ErrorFromJson(const json& j) {
  languages::ErrorInfo e;
  e.type = j.value("type", "");
  e.name = j.value("name", "");
  e.message = j.value("message", "");
  if (j.contains("file") && j["file"].is_string()) e.file = j["file"];
  if (j.contains("line") && j["line"].is_number()) e.line = j["line"];
  if (j.contains("column") && j["column"].is_number()) e.column = j["column"];
  for (const auto& f : j.value("traceback", json::array())) {
    languages::Frame fr;
    fr.file = f.value("file", "");
    fr.line = f.value("line", 0);
    if (f.contains("column") && f["column"].is_number()) fr.column = f["column"];
    fr.function = f.value("function", "");
    e.traceback.push_back(fr);
  }
  return e;
}

json ToJson(const languages::Diagnostic& d) {
  return {{"file", d.file},
          {"line", d.line},
          {"column", d.column ? json(d.column) : json(nullptr)},
          {"severity", d.severity},
          {"message", d.message}};
}

languages::Diagnostic DiagnosticFromJson(const json& j) {
  languages::Diagnostic d;
  d.file = j.value("file", "");
  d.line = j.value("line", 0);
  if (j.contains("column") && j["column"].is_number()) d.column = j["column"];
  d.severity = j.value("severity", "");
  d.message = j.value("message", "");
  return d;
}

json ToJson(const Usage& u) {
  json j = {{"wall_ms", u.wall_ms}, {"cpu_ms", u.cpu_ms}, {"memory_bytes", u.memory_bytes}};
  if (!u.start.empty()) j["start"] = u.start;
  return j;
}

Usage UsageFromJson(const json& j) {
  return {j.value("wall_ms", uint64_t{0}), j.value("cpu_ms", uint64_t{0}),
          j.value("memory_bytes", uint64_t{0}), j.value("start", std::string())};
}

json LimitsToJson(const languages::LimitSet& l) {
  json out = json::object();
  for (size_t i = 0; i < languages::kLimitCount; ++i) {
    if (const auto& v = l.values[i]; v.has_value())
      out[std::string(languages::LimitDecls()[i].name)] = v.value();
  }
  return out;
}

languages::LimitSet LimitsFromJson(const json& j) {
  languages::LimitSet l;
  if (!j.is_object()) return l;
  for (size_t i = 0; i < languages::kLimitCount; ++i) {
    auto it = j.find(std::string(languages::LimitDecls()[i].name));
    if (it != j.end() && it->is_number_integer() && it->get<int64_t>() >= 0)
      l.values[i] = it->get<uint64_t>();
  }
  return l;
}

json ToJson(const StageResult& s) {
  json diags = json::array();
  for (const auto& d : s.diagnostics) diags.push_back(ToJson(d));
  return {{"status", StatusName(s.status)},
          {"exit_code", s.exit_code ? json(*s.exit_code) : json(nullptr)},
          {"signal", s.signal ? json(s.signal) : json(nullptr)},
          {"stdout", s.stdout_text},
          {"stderr", s.stderr_text},
          {"truncated", {{"stdout", s.stdout_truncated}, {"stderr", s.stderr_truncated}}},
          {"diagnostics", diags},
          {"usage", ToJson(s.usage)},
          {"cached", s.cached}};
}

StageResult StageFromJson(const json& j) {
  StageResult s;
  s.status = StatusFromName(j.value("status", "internal_error")).value_or(Status::kInternalError);
  if (j.contains("exit_code") && j["exit_code"].is_number())
    s.exit_code = j["exit_code"].get<int>();
  if (j.contains("signal") && j["signal"].is_number()) s.signal = j["signal"];
  s.stdout_text = j.value("stdout", "");
  s.stderr_text = j.value("stderr", "");
  if (j.contains("truncated")) {
    s.stdout_truncated = j["truncated"].value("stdout", false);
    s.stderr_truncated = j["truncated"].value("stderr", false);
  }
  for (const auto& d : j.value("diagnostics", json::array()))
    s.diagnostics.push_back(DiagnosticFromJson(d));
  if (j.contains("usage")) s.usage = UsageFromJson(j["usage"]);
  s.cached = j.value("cached", false);
  return s;
}

json ToJson(const ExecutionResult& r) {
  json outputs = json::array();
  for (const auto& o : r.outputs) {
    if (o.display.is_null()) {
      outputs.push_back(
          {{"type", "stream"}, {"stream", o.stream}, {"text", o.text}, {"t_ms", o.t_ms}});
    } else {
      outputs.push_back({{"type", "display"},
                         {"data", o.display.value("data", json::object())},
                         {"metadata", o.display.value("metadata", json::object())},
                         {"t_ms", o.t_ms}});
    }
  }
  return {
      {"id", r.id},
      {"language", r.language},
      {"version", r.version},
      {"status", StatusName(r.status)},
      {"limit", r.limit.empty() ? json(nullptr) : json(r.limit)},
      {"reason", r.reason},
      {"exit_code", r.exit_code ? json(*r.exit_code) : json(nullptr)},
      {"signal", r.signal ? json(r.signal) : json(nullptr)},
      {"stdout", r.stdout_text},
      {"stderr", r.stderr_text},
      {"truncated", {{"stdout", r.stdout_truncated}, {"stderr", r.stderr_truncated}}},
      {"outputs", outputs},
      {"error", r.error ? ToJson(*r.error) : json(nullptr)},
      {"compile", r.compile ? ToJson(*r.compile) : json(nullptr)},
      {"usage", ToJson(r.usage)},
      {"limits", LimitsToJson(r.limits)},
      {"compile_limits", r.compile_limits.empty() ? json(nullptr) : LimitsToJson(r.compile_limits)},
      {"labels", r.labels},
      {"created_at", r.created_at},
      {"started_at", r.started_at.empty() ? json(nullptr) : json(r.started_at)},
      {"finished_at", r.finished_at.empty() ? json(nullptr) : json(r.finished_at)},
      {"session_id", r.session_id.empty() ? json(nullptr) : json(r.session_id)},
      {"result", r.result},
  };
}

json ToJson(const CheckReport& r) {
  json files = json::array();
  for (const auto& f : r.files) {
    json errors = json::array();
    for (const auto& e : f.syntax_errors) {
      errors.push_back(
          {{"file", e.file}, {"line", e.line}, {"column", e.column}, {"message", e.message}});
    }
    json imports = json::array();
    json missing = json::array();
    for (const auto& i : f.imports) {
      imports.push_back({{"name", i.name}, {"line", i.line}, {"available", i.available}});
      if (!i.available) missing.push_back(i.name);
    }
    files.push_back({{"file", f.file},
                     {"language", f.language.empty() ? json(nullptr) : json(f.language)},
                     {"detected_by", f.detected_by.empty() ? json(nullptr) : json(f.detected_by)},
                     {"syntax_errors", errors},
                     {"imports", imports},
                     {"missing", missing},
                     {"problem", f.problem.empty() ? json(nullptr) : json(f.problem)}});
  }
  json out = {{"files", files}};
  if (!r.rejected.empty()) out["rejected"] = r.rejected;
  return out;
}

}  // namespace polyrun::engine
