#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "util/error.h"

// The append-only event log of every execution and the history queries over it (DESIGN §8).
// The store knows records, not the engine's types: an event's kind, stream and payload are
// opaque strings to it, and an execution's result is the JSON text the engine folded.
namespace polyrun::store {

// One event of one execution. (execution_id, seq) is unique; the engine numbers an execution's
// events 1, 2, 3, … (the store checks uniqueness only, not the numbering).
struct EventRecord {
  std::string execution_id;
  uint64_t seq = 0;
  uint64_t t_ms = 0;    // monotonic milliseconds since the execution was queued
  std::string kind;     // "queued", "stdout", "finished", … (DESIGN §4)
  std::string stream;   // compile_output: "stdout" or "stderr"; else empty
  std::string data;     // raw output bytes (any bytes, not necessarily UTF-8)
  std::string payload;  // JSON text of the structured fields; empty when none
};

// The row history queries see. `status` is the latest known status name.
struct ExecutionRecord {
  std::string id;  // time-ordered: a larger id is a later execution
  std::string language;
  std::string status;  // "queued", "running", or a final status name
  std::map<std::string, std::string> labels;
  std::string api_key;      // the name of the API key that submitted it (audit); empty: none
  std::string created_at;   // RFC 3339 UTC with milliseconds
  std::string finished_at;  // empty while in flight
  std::string result;       // JSON text of the final result; empty while in flight
};

// History: newest first. Every set field must match (labels: each key = value).
struct HistoryQuery {
  std::map<std::string, std::string> labels;
  std::string language;
  std::string status;
  std::string api_key;
  size_t limit = 50;   // 1..1000
  std::string before;  // cursor: only ids < before; empty: from the newest
};

struct HistoryPage {
  std::vector<ExecutionRecord> items;
  std::string next_before;  // pass as `before` for the next page; empty when no more
};

// What to keep. Only finished executions are ever pruned; 0 means no bound.
struct Retention {
  std::string older_than;   // RFC 3339: prune executions created before this; empty: no age bound
  uint64_t keep_count = 0;  // keep at most this many finished executions (the newest)
};

// Every method is one transaction: it happens entirely or not at all, and once it returns
// success the data survives a crash of this process. Thread-safe. Errors carry the backend's
// message (kSyscall for I/O, kInvalidArgument for a duplicate id/seq or an unknown id).
class Store {
 public:
  virtual ~Store() = default;

  // "sqlite" or "postgresql".
  virtual std::string_view backend() const = 0;

  // Records a new execution together with its first events. Fails on a duplicate id.
  virtual Result<void> Begin(const ExecutionRecord& execution,
                             const std::vector<EventRecord>& events) = 0;
  // Appends events (of one or several executions, each in seq order) and sets the named
  // executions' status where `status` is given. Fails, appending nothing, on a duplicate
  // (id, seq), an unknown execution, or a finished one.
  virtual Result<void> Append(const std::vector<EventRecord>& events,
                              const std::map<std::string, std::string>& status = {}) = 0;
  // Appends the last events and marks the execution finished with its status and result.
  virtual Result<void> Finish(const std::string& id, const std::string& status,
                              const std::string& finished_at, const std::string& result,
                              const std::vector<EventRecord>& last_events) = 0;

  // The execution, or nullopt when the store has no such id.
  virtual Result<std::optional<ExecutionRecord>> Get(const std::string& id) = 0;
  // Its events with seq > after_seq (all: after_seq = -1), in seq order; at most `limit`.
  virtual Result<std::vector<EventRecord>> Events(const std::string& id, int64_t after_seq,
                                                  size_t limit = 100000) = 0;
  virtual Result<HistoryPage> List(const HistoryQuery& query) = 0;
  // Executions that were never finished (in flight when the process died), oldest first.
  virtual Result<std::vector<ExecutionRecord>> Unfinished() = 0;
  // Deletes at most `batch` finished executions (with their events) that fall outside
  // `retention`, oldest first, in one short transaction; returns how many it deleted. Callers
  // loop until it returns less than `batch`, so requests are never blocked for long.
  virtual Result<size_t> Prune(const Retention& retention, size_t batch = 500) = 0;
};

// Opens (creating when needed) the store `location` names: "postgresql://…" or
// "postgres://…" (a libpq connection URI), else a SQLite file path (WAL mode). The schema is
// created or checked on open; an unknown newer schema version is an error naming it.
Result<std::unique_ptr<Store>> OpenStore(const std::string& location);

}  // namespace polyrun::store
