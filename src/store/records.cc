#include "store/records.h"

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>

#include "util/strings.h"

namespace polyrun::store {

namespace {

constexpr uint64_t kMaxInteger = std::numeric_limits<int64_t>::max();  // both store int64

Result<void> CheckText(std::string_view op, std::string_view field, std::string_view value) {
  if (value.find('\0') != std::string_view::npos) {
    return Fail(Errc::kInvalidArgument,
                std::string(op) + ": " + std::string(field) + " contains a NUL byte");
  }
  if (!IsValidUtf8(value)) {
    return Fail(Errc::kInvalidArgument,
                std::string(op) + ": " + std::string(field) + " is not valid UTF-8");
  }
  return {};
}

Result<void> CheckId(std::string_view op, std::string_view field, std::string_view id) {
  if (id.empty())
    return Fail(Errc::kInvalidArgument, std::string(op) + ": " + std::string(field) + " is empty");
  return CheckText(op, field, id);
}

Result<void> CheckLabels(std::string_view op, const std::map<std::string, std::string>& labels) {
  for (const auto& [key, value] : labels) {
    if (auto r = CheckText(op, "label key", key); !r) return r;
    if (auto r = CheckText(op, "label " + key, value); !r) return r;
  }
  return {};
}

bool IsDigits(std::string_view s) {
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

}  // namespace

Result<void> CheckBegin(const ExecutionRecord& execution, const std::vector<EventRecord>& events) {
  const std::string_view op = "begin";
  if (auto r = CheckId(op, "id", execution.id); !r) return r;
  for (const auto& [field, value] :
       {std::pair<std::string_view, const std::string*>{"language", &execution.language},
        {"status", &execution.status},
        {"api_key", &execution.api_key},
        {"created_at", &execution.created_at}}) {
    if (auto r = CheckText(op, field, *value); !r) return r;
  }
  if (execution.status.empty()) return Fail(Errc::kInvalidArgument, "begin: status is empty");
  // A record starts in flight; Finish is what ends it, so history never holds a result
  // without the events that led to it.
  if (!execution.finished_at.empty() || !execution.result.empty()) {
    return Fail(Errc::kInvalidArgument,
                "begin " + execution.id + ": finished_at and result must be empty (use Finish)");
  }
  if (auto r = CheckLabels(op, execution.labels); !r) return r;
  return CheckEvents(op, events, execution.id);
}

Result<void> CheckEvents(std::string_view op, const std::vector<EventRecord>& events,
                         std::string_view only_id) {
  for (const auto& e : events) {
    if (auto r = CheckId(op, "event execution_id", e.execution_id); !r) return r;
    if (!only_id.empty() && e.execution_id != only_id) {
      return Fail(Errc::kInvalidArgument, std::string(op) + " " + std::string(only_id) +
                                              ": event " + EventName(e) +
                                              " belongs to another execution");
    }
    if (e.seq > kMaxInteger || e.t_ms > kMaxInteger) {
      return Fail(Errc::kInvalidArgument,
                  std::string(op) + " " + EventName(e) + ": seq or t_ms out of range");
    }
    for (const auto& [field, value] :
         {std::pair<std::string_view, const std::string*>{"event kind", &e.kind},
          {"event stream", &e.stream},
          {"event payload", &e.payload}}) {
      if (auto r = CheckText(std::string(op) + " " + EventName(e), field, *value); !r) return r;
    }
  }
  return {};
}

Result<void> CheckStatusMap(const std::map<std::string, std::string>& status) {
  for (const auto& [id, name] : status) {
    if (auto r = CheckId("append", "status execution id", id); !r) return r;
    if (name.empty()) return Fail(Errc::kInvalidArgument, "append " + id + ": status is empty");
    if (auto r = CheckText("append " + id, "status", name); !r) return r;
  }
  return {};
}

Result<void> CheckFinish(const std::string& id, const std::string& status,
                         const std::string& finished_at, const std::string& result,
                         const std::vector<EventRecord>& last_events) {
  if (auto r = CheckId("finish", "id", id); !r) return r;
  const std::string op = "finish " + id;
  if (status.empty()) return Fail(Errc::kInvalidArgument, op + ": status is empty");
  if (finished_at.empty()) return Fail(Errc::kInvalidArgument, op + ": finished_at is empty");
  for (const auto& [field, value] :
       {std::pair<std::string_view, const std::string*>{"status", &status},
        {"finished_at", &finished_at},
        {"result", &result}}) {
    if (auto r = CheckText(op, field, *value); !r) return r;
  }
  return CheckEvents("finish", last_events, id);
}

Result<void> CheckQuery(const HistoryQuery& query) {
  if (query.limit < 1 || query.limit > 1000) {
    return Fail(Errc::kInvalidArgument,
                "list: limit must be 1..1000, got " + std::to_string(query.limit));
  }
  for (const auto& [field, value] :
       {std::pair<std::string_view, const std::string*>{"language", &query.language},
        {"status", &query.status},
        {"api_key", &query.api_key},
        {"before", &query.before}}) {
    if (auto r = CheckText("list", field, *value); !r) return r;
  }
  return CheckLabels("list", query.labels);
}

Result<std::string> CheckRetention(const Retention& retention, size_t batch) {
  if (batch == 0) return Fail(Errc::kInvalidArgument, "prune: batch must be at least 1");
  if (retention.keep_count > kMaxInteger) {
    return Fail(Errc::kInvalidArgument, "prune: keep_count out of range");
  }
  std::string_view t = retention.older_than;
  if (t.empty()) return std::string();
  // YYYY-MM-DDTHH:MM:SS, optionally .mmm, then Z.
  const bool shape = (t.size() == 20 || t.size() == 24) && t.back() == 'Z' &&
                     IsDigits(t.substr(0, 4)) && t[4] == '-' && IsDigits(t.substr(5, 2)) &&
                     t[7] == '-' && IsDigits(t.substr(8, 2)) && t[10] == 'T' &&
                     IsDigits(t.substr(11, 2)) && t[13] == ':' && IsDigits(t.substr(14, 2)) &&
                     t[16] == ':' && IsDigits(t.substr(17, 2)) &&
                     (t.size() == 20 || (t[19] == '.' && IsDigits(t.substr(20, 3))));
  if (!shape) {
    return Fail(Errc::kInvalidArgument,
                "prune: older_than must be RFC 3339 UTC like "
                "2024-05-01T12:00:00.000Z, got \"" +
                    std::string(t) + "\"");
  }
  if (t.size() == 20) return std::string(t.substr(0, 19)) + ".000Z";
  return std::string(t);
}

std::string LabelsToJson(const std::map<std::string, std::string>& labels) {
  return nlohmann::json(labels).dump();
}

Result<std::map<std::string, std::string>> LabelsFromJson(std::string_view json,
                                                          std::string_view id) {
  std::map<std::string, std::string> out;
  if (json.empty()) return out;
  auto parsed = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_object()) {
    return Fail(Errc::kParse, "labels of " + std::string(id) + " are not a JSON object");
  }
  for (const auto& [key, value] : parsed.items()) {
    if (!value.is_string()) {
      return Fail(Errc::kParse, "label " + key + " of " + std::string(id) + " is not a string");
    }
    out.emplace(key, value.get<std::string>());
  }
  return out;
}

std::string EventName(const EventRecord& event) {
  return event.execution_id + "/" + std::to_string(event.seq);
}

std::unexpected<Error> WithBackend(std::string_view backend, Error error) {
  error.context = std::string(backend) + ": " + error.context;
  return std::unexpected(std::move(error));
}

}  // namespace polyrun::store
