#include "store/postgres_store.h"

#include <cerrno>
#include <charconv>
#include <cstdint>
#include <deque>
#include <limits>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "store/libpq.h"
#include "store/records.h"

namespace polyrun::store {

namespace {

constexpr std::string_view kBackend = "postgresql";

// Serializes schema creation between nodes opening a fresh database at the same time
// (pg_advisory_xact_lock's key: "polyrun" in ASCII).
constexpr int64_t kSchemaLockKey = 0x706f6c7972756e;

constexpr std::string_view kExecutionColumns =
    "id, language, status, api_key, created_at, finished_at, result, labels";

// The same tables as SQLite's. COLLATE "C" on ids and times: they are compared and ordered
// byte-wise (time-ordered ids, RFC 3339 strings) whatever the database's locale is.
constexpr const char* kSchema = R"sql(
CREATE TABLE polyrun_schema (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  version integer NOT NULL
);
CREATE TABLE executions (
  id text COLLATE "C" PRIMARY KEY,
  language text NOT NULL,
  status text NOT NULL,
  api_key text NOT NULL,
  created_at text COLLATE "C" NOT NULL,
  finished_at text,
  result text,
  labels text NOT NULL
);
CREATE INDEX executions_status ON executions (status, id);
CREATE INDEX executions_language ON executions (language, id);
CREATE INDEX executions_api_key ON executions (api_key, id);
CREATE INDEX executions_created_at ON executions (created_at);
CREATE INDEX executions_unfinished ON executions (id) WHERE finished_at IS NULL;
CREATE TABLE execution_labels (
  execution_id text COLLATE "C" NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
  key text NOT NULL,
  value text NOT NULL,
  PRIMARY KEY (execution_id, key)
);
CREATE INDEX execution_labels_key_value ON execution_labels (key, value, execution_id);
CREATE TABLE events (
  execution_id text COLLATE "C" NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
  seq bigint NOT NULL,
  t_ms bigint NOT NULL,
  kind text NOT NULL,
  stream text NOT NULL,
  data bytea NOT NULL,
  payload text NOT NULL,
  PRIMARY KEY (execution_id, seq)
);
)sql";

// libpq's functions: OpenPostgresStore has loaded them before anything below runs.
const Libpq& Pq() {
  return **LoadLibpq();
}

struct ResultDeleter {
  void operator()(PGresult* r) const { Pq().PQclear(r); }
};
using PgResult = std::unique_ptr<PGresult, ResultDeleter>;

// libpq's messages end in a newline and may span lines; ours are one line.
std::string OneLine(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '\n' || c == '\t') {
      if (!out.empty() && out.back() != ' ') out += ' ';
    } else {
      out += c;
    }
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

Error ConnectionError(PGconn* conn, std::string_view what, std::string call) {
  // libpq reports no errno; EIO keeps the rendered message truthful ("Input/output error").
  return Error{Errc::kSyscall,
               std::string(kBackend) + ": " + std::string(what) + ": " +
                   OneLine(conn != nullptr ? Pq().PQerrorMessage(conn) : "out of memory"),
               std::move(call), EIO};
}

// The error for a failed statement, coded by its SQLSTATE class: integrity and data errors are
// the caller's, connection and resource errors the system's, anything else ours.
Error StatementError(PGconn* conn, const PGresult* r, std::string_view what) {
  const char* state = r != nullptr ? Pq().PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
  const char* primary =
      r != nullptr ? Pq().PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : nullptr;
  if (state == nullptr || primary == nullptr || Pq().PQstatus(conn) != CONNECTION_OK) {
    return ConnectionError(conn, what, "PQexecParams");
  }
  std::string context = std::string(kBackend) + ": " + std::string(what) + ": " + primary;
  if (const char* detail = Pq().PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL)) {
    context += " (" + OneLine(detail) + ")";
  }
  const std::string_view cls = std::string_view(state).substr(0, 2);
  if (cls == "23" || cls == "22") return Error{Errc::kInvalidArgument, context, {}, 0};
  if (cls == "08" || cls == "53" || cls == "57" || cls == "58") {
    return Error{Errc::kSyscall, context, "PQexecParams", EIO};
  }
  return Error{Errc::kInternal, context, {}, 0};
}

// Statement parameters: text as C strings (libpq reads text parameters up to their NUL,
// which is why records never hold one), bytes in binary format with their length.
class Params {
 public:
  Params& Text(const std::string& value) { return Add(value.c_str(), value.size(), 0); }
  Params& Bytes(const std::string& value) { return Add(value.data(), value.size(), 1); }
  Params& Int(int64_t value) {
    owned_.push_back(std::to_string(value));  // a deque never moves its elements
    return Text(owned_.back());
  }
  // "$n" for the parameter added next.
  std::string Next() const { return "$" + std::to_string(values_.size() + 1); }

  int size() const { return static_cast<int>(values_.size()); }
  const char* const* values() const { return values_.data(); }
  const int* lengths() const { return lengths_.data(); }
  const int* formats() const { return formats_.data(); }

 private:
  Params& Add(const char* data, size_t size, int format) {
    values_.push_back(data);
    lengths_.push_back(static_cast<int>(size));
    formats_.push_back(format);
    return *this;
  }

  std::deque<std::string> owned_;
  std::vector<const char*> values_;
  std::vector<int> lengths_;
  std::vector<int> formats_;
};

int64_t BinaryInt8(const PGresult* r, int row, int col) {
  const auto* p = reinterpret_cast<const unsigned char*>(Pq().PQgetvalue(r, row, col));
  uint64_t v = 0;
  for (int i = 0; i < 8 && i < Pq().PQgetlength(r, row, col); ++i) v = (v << 8) | p[i];
  return static_cast<int64_t>(v);
}

std::string Value(const PGresult* r, int row, int col) {
  return std::string(Pq().PQgetvalue(r, row, col),
                     static_cast<size_t>(Pq().PQgetlength(r, row, col)));
}

class PostgresStore final : public Store {
 public:
  explicit PostgresStore(PGconn* conn) : conn_(conn) {}
  PostgresStore(const PostgresStore&) = delete;
  PostgresStore& operator=(const PostgresStore&) = delete;
  ~PostgresStore() override { Pq().PQfinish(conn_); }

  // Creates the schema in an empty database or checks the version of an existing one.
  Result<void> Init();

  std::string_view backend() const override { return kBackend; }
  Result<void> Begin(const ExecutionRecord& execution,
                     const std::vector<EventRecord>& events) override;
  Result<void> Append(const std::vector<EventRecord>& events,
                      const std::map<std::string, std::string>& status) override;
  Result<void> Finish(const std::string& id, const std::string& status,
                      const std::string& finished_at, const std::string& result,
                      const std::vector<EventRecord>& last_events) override;
  Result<std::optional<ExecutionRecord>> Get(const std::string& id) override;
  Result<std::vector<EventRecord>> Events(const std::string& id, int64_t after_seq,
                                          size_t limit) override;
  Result<HistoryPage> List(const HistoryQuery& query) override;
  Result<std::vector<ExecutionRecord>> Unfinished() override;
  Result<size_t> Prune(const Retention& retention, size_t batch) override;

 private:
  // `binary`: results in binary format (raw bytea, big-endian integers).
  Result<PgResult> Exec(const std::string& sql, const Params& params, std::string_view what,
                        bool binary = false);
  Result<void> Reset(std::string_view what);
  // Runs `body` between BEGIN and COMMIT, rolling back when it fails. A connection found
  // broken (a server restart, a failover, an idle timeout) is reset once first.
  template <typename T, typename F>
  Result<T> Transaction(std::string_view what, F&& body);
  // Fails unless `id` names an execution that is not finished; locks its row until the
  // transaction ends, so a concurrent Finish on another node waits.
  Result<void> CheckOpen(const std::string& id, const std::string& op, const std::string& what);
  Result<void> InsertEvents(const std::vector<EventRecord>& events, std::string_view op);
  static Result<std::vector<ExecutionRecord>> ReadExecutions(const PGresult* r);

  std::mutex mu_;
  PGconn* conn_;
};

Result<PgResult> PostgresStore::Exec(const std::string& sql, const Params& params,
                                     std::string_view what, bool binary) {
  PgResult r(Pq().PQexecParams(conn_, sql.c_str(), params.size(), nullptr, params.values(),
                               params.lengths(), params.formats(), binary ? 1 : 0));
  const ExecStatusType status = r ? Pq().PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
  if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) return r;
  return std::unexpected(StatementError(conn_, r.get(), what));
}

Result<void> PostgresStore::Reset(std::string_view what) {
  Pq().PQreset(conn_);
  if (Pq().PQstatus(conn_) != CONNECTION_OK)
    return std::unexpected(ConnectionError(conn_, what, "PQreset"));
  return {};
}

template <typename T, typename F>
Result<T> PostgresStore::Transaction(std::string_view what, F&& body) {
  bool reset = false;
  if (Pq().PQstatus(conn_) != CONNECTION_OK) {
    if (auto r = Reset(what); !r) return std::unexpected(r.error());
    reset = true;
  }
  auto begin = Exec("BEGIN", {}, what);
  if (!begin && !reset && Pq().PQstatus(conn_) != CONNECTION_OK) {
    // The connection died since the last call; nothing of this transaction reached the
    // server, so starting over on a new connection is safe.
    if (auto r = Reset(what); !r) return std::unexpected(r.error());
    begin = Exec("BEGIN", {}, what);
  }
  if (!begin) return std::unexpected(begin.error());
  Result<T> out = body();
  if (out) {
    if (auto r = Exec("COMMIT", {}, what); !r) out = std::unexpected(r.error());
  }
  if (!out && Pq().PQtransactionStatus(conn_) != PQTRANS_IDLE) {
    PgResult(Pq().PQexec(conn_, "ROLLBACK"));  // its own failure adds nothing to the first
  }
  return out;
}

Result<void> PostgresStore::Init() {
  return Transaction<void>("open", [&]() -> Result<void> {
    if (auto r = Exec("SELECT pg_advisory_xact_lock($1)", Params().Int(kSchemaLockKey), "open");
        !r) {
      return std::unexpected(r.error());
    }
    auto exists = Exec("SELECT to_regclass('polyrun_schema') IS NOT NULL", {}, "open");
    if (!exists) return std::unexpected(exists.error());
    if (Value(exists->get(), 0, 0) == "t") {
      auto version = Exec("SELECT version FROM polyrun_schema", {}, "open");
      if (!version) return std::unexpected(version.error());
      if (Pq().PQntuples(version->get()) != 1) {
        return Fail(Errc::kParse, "postgresql: open: polyrun_schema does not hold one version");
      }
      const std::string v = Value(version->get(), 0, 0);
      int64_t n = 0;
      std::from_chars(v.data(), v.data() + v.size(), n);
      if (n > kSchemaVersion) {
        return Fail(Errc::kUnsupported, "postgresql: open: schema version " + v +
                                            " is newer than this polyrun's (" +
                                            std::to_string(kSchemaVersion) + ")");
      }
      return {};
    }
    // A statement list without parameters: the simple query protocol runs all of it.
    PgResult created(Pq().PQexec(conn_, kSchema));
    if (!created || Pq().PQresultStatus(created.get()) != PGRES_COMMAND_OK) {
      return std::unexpected(StatementError(conn_, created.get(), "create schema"));
    }
    if (auto r = Exec("INSERT INTO polyrun_schema (version) VALUES ($1)",
                      Params().Int(kSchemaVersion), "create schema");
        !r) {
      return std::unexpected(r.error());
    }
    return {};
  });
}

Result<void> PostgresStore::CheckOpen(const std::string& id, const std::string& op,
                                      const std::string& what) {
  auto r = Exec("SELECT finished_at IS NOT NULL FROM executions WHERE id = $1 FOR UPDATE",
                Params().Text(id), op + " " + what);
  if (!r) return std::unexpected(r.error());
  if (Pq().PQntuples(r->get()) == 0) {
    return Fail(Errc::kInvalidArgument,
                std::string(kBackend) + ": " + op + " " + what + ": no such execution");
  }
  if (Value(r->get(), 0, 0) == "t") {
    return Fail(Errc::kInvalidArgument,
                std::string(kBackend) + ": " + op + " " + what + ": execution is already finished");
  }
  return {};
}

Result<void> PostgresStore::InsertEvents(const std::vector<EventRecord>& events,
                                         std::string_view op) {
  for (const auto& e : events) {
    Params p;
    p.Text(e.execution_id)
        .Int(static_cast<int64_t>(e.seq))
        .Int(static_cast<int64_t>(e.t_ms))
        .Text(e.kind)
        .Text(e.stream)
        .Bytes(e.data)
        .Text(e.payload);
    if (auto r = Exec("INSERT INTO events (execution_id, seq, t_ms, kind, stream, data, payload) "
                      "VALUES ($1, $2, $3, $4, $5, $6, $7)",
                      p, std::string(op) + " " + EventName(e));
        !r) {
      return std::unexpected(r.error());
    }
  }
  return {};
}

Result<void> PostgresStore::Begin(const ExecutionRecord& execution,
                                  const std::vector<EventRecord>& events) {
  if (auto r = CheckBegin(execution, events); !r) return WithBackend(kBackend, r.error());
  const std::string what = "begin " + execution.id;
  const std::string labels = LabelsToJson(execution.labels);
  std::lock_guard lock(mu_);
  return Transaction<void>(what, [&]() -> Result<void> {
    Params p;
    p.Text(execution.id)
        .Text(execution.language)
        .Text(execution.status)
        .Text(execution.api_key)
        .Text(execution.created_at)
        .Text(labels);
    if (auto r = Exec("INSERT INTO executions (id, language, status, api_key, created_at, labels) "
                      "VALUES ($1, $2, $3, $4, $5, $6)",
                      p, what);
        !r) {
      return std::unexpected(r.error());
    }
    for (const auto& [key, value] : execution.labels) {
      if (auto r = Exec("INSERT INTO execution_labels (execution_id, key, value) "
                        "VALUES ($1, $2, $3)",
                        Params().Text(execution.id).Text(key).Text(value), what);
          !r) {
        return std::unexpected(r.error());
      }
    }
    return InsertEvents(events, "begin");
  });
}

Result<void> PostgresStore::Append(const std::vector<EventRecord>& events,
                                   const std::map<std::string, std::string>& status) {
  if (auto r = CheckEvents("append", events); !r) return WithBackend(kBackend, r.error());
  if (auto r = CheckStatusMap(status); !r) return WithBackend(kBackend, r.error());
  // Each execution touched, named in errors by its first event when it has one. Locked in id
  // order, so two appends over the same executions cannot deadlock.
  std::map<std::string, std::string> touched;
  for (const auto& e : events) touched.emplace(e.execution_id, EventName(e));
  for (const auto& [id, name] : status) touched.emplace(id, id);
  std::lock_guard lock(mu_);
  return Transaction<void>("append", [&]() -> Result<void> {
    for (const auto& [id, what] : touched) {
      if (auto r = CheckOpen(id, "append", what); !r) return r;
    }
    if (auto r = InsertEvents(events, "append"); !r) return r;
    for (const auto& [id, name] : status) {
      if (auto r = Exec("UPDATE executions SET status = $1 WHERE id = $2",
                        Params().Text(name).Text(id), "append " + id);
          !r) {
        return std::unexpected(r.error());
      }
    }
    return {};
  });
}

Result<void> PostgresStore::Finish(const std::string& id, const std::string& status,
                                   const std::string& finished_at, const std::string& result,
                                   const std::vector<EventRecord>& last_events) {
  if (auto r = CheckFinish(id, status, finished_at, result, last_events); !r) {
    return WithBackend(kBackend, r.error());
  }
  const std::string what = "finish " + id;
  std::lock_guard lock(mu_);
  return Transaction<void>(what, [&]() -> Result<void> {
    if (auto r = CheckOpen(id, "finish", id); !r) return r;
    if (auto r = InsertEvents(last_events, "finish"); !r) return r;
    if (auto r =
            Exec("UPDATE executions SET status = $1, finished_at = $2, result = $3 WHERE id = $4",
                 Params().Text(status).Text(finished_at).Text(result).Text(id), what);
        !r) {
      return std::unexpected(r.error());
    }
    return {};
  });
}

Result<std::vector<ExecutionRecord>> PostgresStore::ReadExecutions(const PGresult* r) {
  std::vector<ExecutionRecord> out;
  const int rows = Pq().PQntuples(r);
  out.reserve(static_cast<size_t>(rows));
  for (int i = 0; i < rows; ++i) {
    ExecutionRecord e;
    e.id = Value(r, i, 0);
    e.language = Value(r, i, 1);
    e.status = Value(r, i, 2);
    e.api_key = Value(r, i, 3);
    e.created_at = Value(r, i, 4);
    e.finished_at = Value(r, i, 5);  // NULL reads as ""
    e.result = Value(r, i, 6);
    auto labels = LabelsFromJson(Value(r, i, 7), e.id);
    if (!labels) return WithBackend(kBackend, labels.error());
    e.labels = std::move(*labels);
    out.push_back(std::move(e));
  }
  return out;
}

Result<std::optional<ExecutionRecord>> PostgresStore::Get(const std::string& id) {
  const std::string what = "get " + id;
  std::lock_guard lock(mu_);
  return Transaction<std::optional<ExecutionRecord>>(
      what, [&]() -> Result<std::optional<ExecutionRecord>> {
        auto r = Exec("SELECT " + std::string(kExecutionColumns) + " FROM executions WHERE id = $1",
                      Params().Text(id), what);
        if (!r) return std::unexpected(r.error());
        auto rows = ReadExecutions(r->get());
        if (!rows) return std::unexpected(rows.error());
        if (rows->empty()) return std::nullopt;
        return std::move(rows->front());
      });
}

Result<std::vector<EventRecord>> PostgresStore::Events(const std::string& id, int64_t after_seq,
                                                       size_t limit) {
  const std::string what = "events " + id;
  std::lock_guard lock(mu_);
  return Transaction<std::vector<EventRecord>>(what, [&]() -> Result<std::vector<EventRecord>> {
    Params p;
    p.Text(id).Int(after_seq).Int(
        static_cast<int64_t>(std::min<uint64_t>(limit, std::numeric_limits<int64_t>::max())));
    auto r = Exec(
        "SELECT seq, t_ms, kind, stream, data, payload FROM events "
        "WHERE execution_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        p, what, /*binary=*/true);
    if (!r) return std::unexpected(r.error());
    const PGresult* res = r->get();
    std::vector<EventRecord> out;
    out.reserve(static_cast<size_t>(Pq().PQntuples(res)));
    for (int i = 0; i < Pq().PQntuples(res); ++i) {
      EventRecord e;
      e.execution_id = id;
      e.seq = static_cast<uint64_t>(BinaryInt8(res, i, 0));
      e.t_ms = static_cast<uint64_t>(BinaryInt8(res, i, 1));
      e.kind = Value(res, i, 2);  // text in binary format is its bytes
      e.stream = Value(res, i, 3);
      e.data = Value(res, i, 4);
      e.payload = Value(res, i, 5);
      out.push_back(std::move(e));
    }
    return out;
  });
}

Result<HistoryPage> PostgresStore::List(const HistoryQuery& query) {
  if (auto r = CheckQuery(query); !r) return WithBackend(kBackend, r.error());
  // The SQL has one shape per set of filters; values are always parameters.
  Params p;
  std::string sql = "SELECT " + std::string(kExecutionColumns) + " FROM executions WHERE true";
  auto add = [&](std::string_view condition, const std::string& value) {
    sql += " AND " + std::string(condition) + " " + p.Next();
    p.Text(value);
  };
  if (!query.before.empty()) add("id <", query.before);
  if (!query.language.empty()) add("language =", query.language);
  if (!query.status.empty()) add("status =", query.status);
  if (!query.api_key.empty()) add("api_key =", query.api_key);
  for (const auto& [key, value] : query.labels) {
    sql += " AND id IN (SELECT execution_id FROM execution_labels WHERE key = " + p.Next();
    p.Text(key);
    sql += " AND value = " + p.Next() + ")";
    p.Text(value);
  }
  // One row more than the page tells whether another page follows.
  sql += " ORDER BY id DESC LIMIT " + p.Next();
  p.Int(static_cast<int64_t>(query.limit + 1));

  std::lock_guard lock(mu_);
  return Transaction<HistoryPage>("list", [&]() -> Result<HistoryPage> {
    auto r = Exec(sql, p, "list");
    if (!r) return std::unexpected(r.error());
    auto rows = ReadExecutions(r->get());
    if (!rows) return std::unexpected(rows.error());
    HistoryPage page;
    page.items = std::move(*rows);
    if (page.items.size() > query.limit) {
      page.items.resize(query.limit);
      page.next_before = page.items.back().id;
    }
    return page;
  });
}

Result<std::vector<ExecutionRecord>> PostgresStore::Unfinished() {
  std::lock_guard lock(mu_);
  return Transaction<std::vector<ExecutionRecord>>(
      "unfinished", [&]() -> Result<std::vector<ExecutionRecord>> {
        auto r = Exec("SELECT " + std::string(kExecutionColumns) +
                          " FROM executions WHERE finished_at IS NULL ORDER BY id",
                      {}, "unfinished");
        if (!r) return std::unexpected(r.error());
        return ReadExecutions(r->get());
      });
}

Result<size_t> PostgresStore::Prune(const Retention& retention, size_t batch) {
  auto cutoff = CheckRetention(retention, batch);
  if (!cutoff) return WithBackend(kBackend, cutoff.error());
  if (cutoff->empty() && retention.keep_count == 0) return 0;
  Params p;
  std::string bounds;
  if (!cutoff->empty()) {
    bounds = "created_at < " + p.Next();
    p.Text(*cutoff);
  }
  if (retention.keep_count > 0) {
    // The (keep_count+1)-th newest finished execution and every finished one before it fall
    // outside the count bound.
    bounds += std::string(bounds.empty() ? "" : " OR ") +
              "id <= (SELECT id FROM executions WHERE finished_at IS NOT NULL "
              "ORDER BY id DESC OFFSET " +
              p.Next() + " LIMIT 1)";
    p.Int(static_cast<int64_t>(retention.keep_count));
  }
  const std::string sql =
      "DELETE FROM executions WHERE id IN (SELECT id FROM executions "
      "WHERE finished_at IS NOT NULL AND (" +
      bounds + ") ORDER BY id LIMIT " + p.Next() + ")";
  p.Int(static_cast<int64_t>(std::min<uint64_t>(batch, std::numeric_limits<int64_t>::max())));
  std::lock_guard lock(mu_);
  return Transaction<size_t>("prune", [&]() -> Result<size_t> {
    auto r = Exec(sql, p, "prune");
    if (!r) return std::unexpected(r.error());
    // Rows the statement deleted itself, not the events and labels the cascade removed.
    const std::string_view n = Pq().PQcmdTuples(r->get());
    size_t deleted = 0;
    std::from_chars(n.data(), n.data() + n.size(), deleted);
    return deleted;
  });
}

}  // namespace

Result<std::unique_ptr<Store>> OpenPostgresStore(const std::string& uri) {
  if (auto loaded = LoadLibpq(); !loaded) return std::unexpected(loaded.error());
  {
    char* err = nullptr;
    PQconninfoOption* options = Pq().PQconninfoParse(uri.c_str(), &err);
    if (options == nullptr) {
      std::string message = err != nullptr ? OneLine(err) : "out of memory";
      Pq().PQfreemem(err);
      return Fail(Errc::kParse, "postgresql: bad connection URI: " + message);
    }
    Pq().PQconninfoFree(options);
  }
  // The URI, expanded as dbname, comes first: the keys after it override it. The store's text
  // is UTF-8 whatever the database's default encoding is.
  const char* keys[] = {"dbname", "fallback_application_name", "client_encoding", nullptr};
  const char* values[] = {uri.c_str(), "polyrun", "UTF8", nullptr};
  PGconn* conn = Pq().PQconnectdbParams(keys, values, /*expand_dbname=*/1);
  if (conn == nullptr || Pq().PQstatus(conn) != CONNECTION_OK) {
    Error e = ConnectionError(conn, "connect", "PQconnectdb");
    Pq().PQfinish(conn);
    return std::unexpected(std::move(e));
  }
  // CREATE … and friends send notices; libpq would print them on stderr.
  Pq().PQsetNoticeProcessor(
      conn, [](void*, const char*) {}, nullptr);
  auto store = std::make_unique<PostgresStore>(conn);
  if (auto r = store->Init(); !r) return std::unexpected(r.error());
  return store;
}

}  // namespace polyrun::store
