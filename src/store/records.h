#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "store/store.h"
#include "util/error.h"

// What both backends check and encode alike, so that one conformance suite holds for both.
// Errors name the operation and the offending field; the backend prefixes its own name.
namespace polyrun::store {

// The schema this code writes. A store whose recorded version is newer is refused on open;
// an older one would be migrated there (there is none yet).
inline constexpr int kSchemaVersion = 1;

// Every text column must be valid UTF-8 without NUL: PostgreSQL's text type can hold neither
// (and libpq passes text parameters as C strings), so SQLite refuses them too. Only an event's
// `data` may hold any bytes.
Result<void> CheckBegin(const ExecutionRecord& execution, const std::vector<EventRecord>& events);
// `op` names the method ("append", "finish"); `only_id` non-empty: every event must be its.
Result<void> CheckEvents(std::string_view op, const std::vector<EventRecord>& events,
                         std::string_view only_id = {});
Result<void> CheckStatusMap(const std::map<std::string, std::string>& status);
Result<void> CheckFinish(const std::string& id, const std::string& status,
                         const std::string& finished_at, const std::string& result,
                         const std::vector<EventRecord>& last_events);
// limit 1..1000 (kInvalidArgument naming `limit`), and the text fields.
Result<void> CheckQuery(const HistoryQuery& query);

// Retention's age bound in the stored form of created_at ("YYYY-MM-DDTHH:MM:SS.mmmZ"), so
// that it compares as a string: "…:05Z" becomes "…:05.000Z". Empty stays empty (no bound);
// anything else is kInvalidArgument naming `older_than`. batch 0 is refused (callers loop
// until a call deletes less than `batch`).
Result<std::string> CheckRetention(const Retention& retention, size_t batch);

// Labels as a JSON object (keys sorted), the form the executions table keeps them in.
std::string LabelsToJson(const std::map<std::string, std::string>& labels);
Result<std::map<std::string, std::string>> LabelsFromJson(std::string_view json,
                                                          std::string_view id);

// "what/seq" for error messages about one event.
std::string EventName(const EventRecord& event);

// The error with "backend: " in front of its context.
std::unexpected<Error> WithBackend(std::string_view backend, Error error);

}  // namespace polyrun::store
