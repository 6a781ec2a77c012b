#include "store/sqlite_store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <map>
#include <mutex>
#include <utility>

#include "store/records.h"
#include "util/unique_fd.h"

namespace polyrun::store {

namespace {

constexpr std::string_view kBackend = "sqlite";

// Another connection (another process on the same file) holds the write lock at most this
// long before a writer gives up with SQLITE_BUSY.
constexpr int kBusyTimeoutMs = 5000;

// Beyond this many distinct statements (List builds one per filter shape), new ones are
// prepared per call instead of cached, so odd label combinations cannot grow the cache.
constexpr size_t kMaxCachedStatements = 64;

constexpr std::string_view kExecutionColumns =
    "id, language, status, api_key, created_at, finished_at, result, labels";

// STRICT: a value of the wrong type is an error, not silently stored. The label rows repeat
// executions.labels so that label filters use an index; executions.labels is what reads
// return. Each index serves a query: (status|language|api_key, id) a filtered List walking
// ids newest first, created_at Prune's age bound, the partial index Unfinished.
constexpr const char* kSchema = R"sql(
CREATE TABLE executions (
  id TEXT PRIMARY KEY NOT NULL,
  language TEXT NOT NULL,
  status TEXT NOT NULL,
  api_key TEXT NOT NULL,
  created_at TEXT NOT NULL,
  finished_at TEXT,
  result TEXT,
  labels TEXT NOT NULL
) STRICT;
CREATE INDEX executions_status ON executions(status, id);
CREATE INDEX executions_language ON executions(language, id);
CREATE INDEX executions_api_key ON executions(api_key, id);
CREATE INDEX executions_created_at ON executions(created_at);
CREATE INDEX executions_unfinished ON executions(id) WHERE finished_at IS NULL;
CREATE TABLE execution_labels (
  execution_id TEXT NOT NULL REFERENCES executions(id) ON DELETE CASCADE,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (execution_id, key)
) STRICT, WITHOUT ROWID;
CREATE INDEX execution_labels_key_value ON execution_labels(key, value, execution_id);
CREATE TABLE events (
  execution_id TEXT NOT NULL REFERENCES executions(id) ON DELETE CASCADE,
  seq INTEGER NOT NULL,
  t_ms INTEGER NOT NULL,
  kind TEXT NOT NULL,
  stream TEXT NOT NULL,
  data BLOB NOT NULL,
  payload TEXT NOT NULL,
  PRIMARY KEY (execution_id, seq)
) STRICT, WITHOUT ROWID;
)sql";

// The error for a failed SQLite call: the operation, SQLite's own message, and a code saying
// whose fault it is (a constraint is the caller's; I/O and locking are the system's).
Error SqlError(sqlite3* db, int rc, std::string_view what, std::string_view call) {
  Error e;
  e.context = std::string(kBackend) + ": " + std::string(what) + ": " +
              (db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
    case SQLITE_TOOBIG:
    case SQLITE_MISMATCH:
      e.code = Errc::kInvalidArgument;
      break;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      e.code = Errc::kParse;
      break;
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_NOMEM:
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_PROTOCOL: {
      e.code = Errc::kSyscall;
      e.syscall = std::string(call);
      e.sys_errno = db != nullptr ? sqlite3_system_errno(db) : 0;
      if (e.sys_errno == 0) {
        // No system call failed underneath (a lock timeout, a full disk SQLite detected
        // itself): the nearest errno keeps the message truthful.
        switch (rc & 0xff) {
          case SQLITE_FULL:
            e.sys_errno = ENOSPC;
            break;
          case SQLITE_BUSY:
          case SQLITE_LOCKED:
            e.sys_errno = EBUSY;
            break;
          case SQLITE_NOMEM:
            e.sys_errno = ENOMEM;
            break;
          case SQLITE_READONLY:
            e.sys_errno = EROFS;
            break;
          case SQLITE_PERM:
            e.sys_errno = EACCES;
            break;
          default:
            e.sys_errno = EIO;
        }
      }
      break;
    }
    default:
      e.code = Errc::kInternal;
  }
  return e;
}

// One use of a prepared statement: binds, steps, reads columns, and on destruction resets it
// for the next use (or finalizes it when it is not cached). Text and blobs are bound without
// copying: the bound strings must outlive the Statement.
class Statement {
 public:
  Statement(sqlite3_stmt* stmt, bool owned) : stmt_(stmt), owned_(owned) {}
  Statement(Statement&& other) noexcept
      : stmt_(std::exchange(other.stmt_, nullptr)),
        owned_(other.owned_),
        bind_rc_(other.bind_rc_) {}
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  Statement& operator=(Statement&&) = delete;
  ~Statement() {
    if (stmt_ == nullptr) return;
    if (owned_) {
      sqlite3_finalize(stmt_);
    } else {
      sqlite3_reset(stmt_);
      sqlite3_clear_bindings(stmt_);
    }
  }

  Statement& Text(int i, const std::string& value) {
    Check(sqlite3_bind_text64(stmt_, i, value.c_str(), value.size(), SQLITE_STATIC, SQLITE_UTF8));
    return *this;
  }
  // std::string's data() is never null, so an empty value binds an empty blob, not NULL.
  Statement& Blob(int i, const std::string& value) {
    Check(sqlite3_bind_blob64(stmt_, i, value.data(), value.size(), SQLITE_STATIC));
    return *this;
  }
  Statement& Int(int i, int64_t value) {
    Check(sqlite3_bind_int64(stmt_, i, value));
    return *this;
  }

  // SQLITE_ROW, SQLITE_DONE, or an error code (also a failed bind).
  int Step() { return bind_rc_ != SQLITE_OK ? bind_rc_ : sqlite3_step(stmt_); }

  bool IsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  std::string Text(int col) const {
    const auto* p = sqlite3_column_text(stmt_, col);
    const int n = sqlite3_column_bytes(stmt_, col);
    return p == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(p), n);
  }
  std::string Blob(int col) const {
    const void* p = sqlite3_column_blob(stmt_, col);
    const int n = sqlite3_column_bytes(stmt_, col);
    return p == nullptr ? std::string() : std::string(static_cast<const char*>(p), n);
  }

 private:
  void Check(int rc) {
    if (rc != SQLITE_OK && bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  }

  sqlite3_stmt* stmt_;
  bool owned_;
  int bind_rc_ = SQLITE_OK;
};

class SqliteStore final : public Store {
 public:
  SqliteStore(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;
  ~SqliteStore() override {
    for (auto& [sql, stmt] : cache_) sqlite3_finalize(stmt);
    sqlite3_close_v2(db_);
  }

  // Creates the schema in a new file or checks the version of an existing one.
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
  Result<Statement> Prepare(const std::string& sql, std::string_view what);
  // Runs a statement that returns no rows.
  Result<void> Run(const std::string& sql, std::string_view what);
  Result<void> Done(Statement& stmt, std::string_view what);
  // Runs `body` inside BEGIN IMMEDIATE … COMMIT (IMMEDIATE: take the write lock up front, so
  // a concurrent writer waits at BEGIN instead of failing at its first write); rolls back
  // when it fails.
  template <typename T, typename F>
  Result<T> Transaction(std::string_view what, F&& body);
  // Fails unless `id` names an execution that is not finished. `what` names it in errors.
  Result<void> CheckOpen(const std::string& id, const std::string& op, const std::string& what);
  Result<void> InsertEvents(const std::vector<EventRecord>& events, std::string_view op);
  Result<std::vector<ExecutionRecord>> ReadExecutions(Statement& stmt, std::string_view what);

  std::mutex mu_;
  sqlite3* db_;
  std::string path_;
  std::map<std::string, sqlite3_stmt*, std::less<>> cache_;
};

Result<Statement> SqliteStore::Prepare(const std::string& sql, std::string_view what) {
  if (auto it = cache_.find(sql); it != cache_.end()) return Statement(it->second, false);
  const bool cache = cache_.size() < kMaxCachedStatements;
  sqlite3_stmt* stmt = nullptr;
  const int rc = sqlite3_prepare_v3(db_, sql.c_str(), static_cast<int>(sql.size() + 1),
                                    cache ? SQLITE_PREPARE_PERSISTENT : 0, &stmt, nullptr);
  if (rc != SQLITE_OK) {
    sqlite3_finalize(stmt);
    return std::unexpected(SqlError(db_, rc, what, "sqlite3_prepare_v3"));
  }
  if (cache) cache_.emplace(sql, stmt);
  return Statement(stmt, !cache);
}

Result<void> SqliteStore::Done(Statement& stmt, std::string_view what) {
  const int rc = stmt.Step();
  if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
    return std::unexpected(SqlError(db_, rc, what, "sqlite3_step"));
  }
  return {};
}

Result<void> SqliteStore::Run(const std::string& sql, std::string_view what) {
  auto stmt = Prepare(sql, what);
  if (!stmt) return std::unexpected(stmt.error());
  return Done(*stmt, what);
}

template <typename T, typename F>
Result<T> SqliteStore::Transaction(std::string_view what, F&& body) {
  if (auto r = Run("BEGIN IMMEDIATE", what); !r) return std::unexpected(r.error());
  Result<T> out = body();
  if (out) {
    if (auto r = Run("COMMIT", what); !r) out = std::unexpected(r.error());
  }
  // Some errors (a full disk, I/O) end the transaction themselves; roll back what is left.
  if (!out && sqlite3_get_autocommit(db_) == 0) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);  // its own failure adds nothing
  }
  return out;
}

Result<void> SqliteStore::Init() {
  // WAL: readers never block the writer. synchronous=NORMAL: a commit is in the WAL file (the
  // OS page cache) before it returns, so it survives a crash of this process; surviving a
  // power loss too would need FULL (an fsync per commit).
  for (const char* pragma : {"PRAGMA synchronous = NORMAL", "PRAGMA foreign_keys = ON"}) {
    if (int rc = sqlite3_exec(db_, pragma, nullptr, nullptr, nullptr); rc != SQLITE_OK) {
      return std::unexpected(SqlError(db_, rc, "open " + path_, "sqlite3_exec"));
    }
  }
  {
    auto wal = Prepare("PRAGMA journal_mode = WAL", "open " + path_);
    if (!wal) return std::unexpected(wal.error());
    const int rc = wal->Step();
    if (rc != SQLITE_ROW) {
      return std::unexpected(SqlError(db_, rc, "open " + path_, "sqlite3_step"));
    }
    if (wal->Text(0) != "wal") {
      return Fail(Errc::kUnsupported,
                  "sqlite: open " + path_ + ": cannot use WAL mode (got " + wal->Text(0) + ")");
    }
  }
  return Transaction<void>("open " + path_, [&]() -> Result<void> {
    auto version = Prepare("PRAGMA user_version", "open " + path_);
    if (!version) return std::unexpected(version.error());
    if (const int rc = version->Step(); rc != SQLITE_ROW) {
      return std::unexpected(SqlError(db_, rc, "open " + path_, "sqlite3_step"));
    }
    const int64_t v = version->Int(0);
    if (v > kSchemaVersion) {
      return Fail(Errc::kUnsupported, "sqlite: open " + path_ + ": schema version " +
                                          std::to_string(v) + " is newer than this polyrun's (" +
                                          std::to_string(kSchemaVersion) + ")");
    }
    if (v == kSchemaVersion) return {};
    const std::string create =
        std::string(kSchema) + "PRAGMA user_version = " + std::to_string(kSchemaVersion) + ";";
    if (int rc = sqlite3_exec(db_, create.c_str(), nullptr, nullptr, nullptr); rc != SQLITE_OK) {
      return std::unexpected(SqlError(db_, rc, "create schema in " + path_, "sqlite3_exec"));
    }
    return {};
  });
}

Result<void> SqliteStore::CheckOpen(const std::string& id, const std::string& op,
                                    const std::string& what) {
  auto stmt = Prepare("SELECT finished_at IS NOT NULL FROM executions WHERE id = ?1", op);
  if (!stmt) return std::unexpected(stmt.error());
  stmt->Text(1, id);
  const int rc = stmt->Step();
  if (rc == SQLITE_DONE) {
    return Fail(Errc::kInvalidArgument,
                std::string(kBackend) + ": " + op + " " + what + ": no such execution");
  }
  if (rc != SQLITE_ROW) return std::unexpected(SqlError(db_, rc, op + " " + what, "sqlite3_step"));
  if (stmt->Int(0) != 0) {
    return Fail(Errc::kInvalidArgument,
                std::string(kBackend) + ": " + op + " " + what + ": execution is already finished");
  }
  return {};
}

Result<void> SqliteStore::InsertEvents(const std::vector<EventRecord>& events,
                                       std::string_view op) {
  for (const auto& e : events) {
    const std::string what = std::string(op) + " " + EventName(e);
    auto stmt = Prepare(
        "INSERT INTO events (execution_id, seq, t_ms, kind, stream, data, payload) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        what);
    if (!stmt) return std::unexpected(stmt.error());
    stmt->Text(1, e.execution_id)
        .Int(2, static_cast<int64_t>(e.seq))
        .Int(3, static_cast<int64_t>(e.t_ms))
        .Text(4, e.kind)
        .Text(5, e.stream)
        .Blob(6, e.data)
        .Text(7, e.payload);
    if (auto r = Done(*stmt, what); !r) return r;
  }
  return {};
}

Result<void> SqliteStore::Begin(const ExecutionRecord& execution,
                                const std::vector<EventRecord>& events) {
  if (auto r = CheckBegin(execution, events); !r) return WithBackend(kBackend, r.error());
  std::lock_guard lock(mu_);
  const std::string what = "begin " + execution.id;
  return Transaction<void>(what, [&]() -> Result<void> {
    auto stmt = Prepare(
        "INSERT INTO executions (id, language, status, api_key, created_at, labels) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        what);
    if (!stmt) return std::unexpected(stmt.error());
    const std::string labels = LabelsToJson(execution.labels);
    stmt->Text(1, execution.id)
        .Text(2, execution.language)
        .Text(3, execution.status)
        .Text(4, execution.api_key)
        .Text(5, execution.created_at)
        .Text(6, labels);
    if (auto r = Done(*stmt, what); !r) return r;
    for (const auto& [key, value] : execution.labels) {
      auto label = Prepare(
          "INSERT INTO execution_labels (execution_id, key, value) VALUES (?1, ?2, ?3)", what);
      if (!label) return std::unexpected(label.error());
      label->Text(1, execution.id).Text(2, key).Text(3, value);
      if (auto r = Done(*label, what); !r) return r;
    }
    return InsertEvents(events, "begin");
  });
}

Result<void> SqliteStore::Append(const std::vector<EventRecord>& events,
                                 const std::map<std::string, std::string>& status) {
  if (auto r = CheckEvents("append", events); !r) return WithBackend(kBackend, r.error());
  if (auto r = CheckStatusMap(status); !r) return WithBackend(kBackend, r.error());
  // Each execution touched, named in errors by its first event when it has one.
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
      const std::string what = "append " + id;
      auto stmt = Prepare("UPDATE executions SET status = ?1 WHERE id = ?2", what);
      if (!stmt) return std::unexpected(stmt.error());
      stmt->Text(1, name).Text(2, id);
      if (auto r = Done(*stmt, what); !r) return r;
    }
    return {};
  });
}

Result<void> SqliteStore::Finish(const std::string& id, const std::string& status,
                                 const std::string& finished_at, const std::string& result,
                                 const std::vector<EventRecord>& last_events) {
  if (auto r = CheckFinish(id, status, finished_at, result, last_events); !r) {
    return WithBackend(kBackend, r.error());
  }
  std::lock_guard lock(mu_);
  const std::string what = "finish " + id;
  return Transaction<void>(what, [&]() -> Result<void> {
    if (auto r = CheckOpen(id, "finish", id); !r) return r;
    if (auto r = InsertEvents(last_events, "finish"); !r) return r;
    auto stmt = Prepare(
        "UPDATE executions SET status = ?1, finished_at = ?2, result = ?3 WHERE id = ?4", what);
    if (!stmt) return std::unexpected(stmt.error());
    stmt->Text(1, status).Text(2, finished_at).Text(3, result).Text(4, id);
    return Done(*stmt, what);
  });
}

Result<std::vector<ExecutionRecord>> SqliteStore::ReadExecutions(Statement& stmt,
                                                                 std::string_view what) {
  std::vector<ExecutionRecord> out;
  for (;;) {
    const int rc = stmt.Step();
    if (rc == SQLITE_DONE) return out;
    if (rc != SQLITE_ROW) return std::unexpected(SqlError(db_, rc, what, "sqlite3_step"));
    ExecutionRecord e;
    e.id = stmt.Text(0);
    e.language = stmt.Text(1);
    e.status = stmt.Text(2);
    e.api_key = stmt.Text(3);
    e.created_at = stmt.Text(4);
    e.finished_at = stmt.Text(5);
    e.result = stmt.Text(6);
    auto labels = LabelsFromJson(stmt.Text(7), e.id);
    if (!labels) return WithBackend(kBackend, labels.error());
    e.labels = std::move(*labels);
    out.push_back(std::move(e));
  }
}

// Reads are single statements, each its own (implicit) transaction.
Result<std::optional<ExecutionRecord>> SqliteStore::Get(const std::string& id) {
  std::lock_guard lock(mu_);
  const std::string what = "get " + id;
  auto stmt =
      Prepare("SELECT " + std::string(kExecutionColumns) + " FROM executions WHERE id = ?1", what);
  if (!stmt) return std::unexpected(stmt.error());
  stmt->Text(1, id);
  auto rows = ReadExecutions(*stmt, what);
  if (!rows) return std::unexpected(rows.error());
  if (rows->empty()) return std::nullopt;
  return std::move(rows->front());
}

Result<std::vector<EventRecord>> SqliteStore::Events(const std::string& id, int64_t after_seq,
                                                     size_t limit) {
  std::lock_guard lock(mu_);
  const std::string what = "events " + id;
  auto stmt = Prepare(
      "SELECT seq, t_ms, kind, stream, data, payload FROM events "
      "WHERE execution_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
      what);
  if (!stmt) return std::unexpected(stmt.error());
  stmt->Text(1, id)
      .Int(2, after_seq)
      .Int(3, static_cast<int64_t>(std::min<uint64_t>(limit, std::numeric_limits<int64_t>::max())));
  std::vector<EventRecord> out;
  for (;;) {
    const int rc = stmt->Step();
    if (rc == SQLITE_DONE) return out;
    if (rc != SQLITE_ROW) return std::unexpected(SqlError(db_, rc, what, "sqlite3_step"));
    EventRecord e;
    e.execution_id = id;
    e.seq = static_cast<uint64_t>(stmt->Int(0));
    e.t_ms = static_cast<uint64_t>(stmt->Int(1));
    e.kind = stmt->Text(2);
    e.stream = stmt->Text(3);
    e.data = stmt->Blob(4);
    e.payload = stmt->Text(5);
    out.push_back(std::move(e));
  }
}

Result<HistoryPage> SqliteStore::List(const HistoryQuery& query) {
  if (auto r = CheckQuery(query); !r) return WithBackend(kBackend, r.error());
  // The SQL has one shape per set of filters; values are always bound.
  std::string sql = "SELECT " + std::string(kExecutionColumns) + " FROM executions WHERE 1 = 1";
  std::vector<const std::string*> params;
  auto add = [&](std::string_view condition, const std::string& value) {
    params.push_back(&value);
    sql += " AND " + std::string(condition) + " ?" + std::to_string(params.size());
  };
  if (!query.before.empty()) add("id <", query.before);
  if (!query.language.empty()) add("language =", query.language);
  if (!query.status.empty()) add("status =", query.status);
  if (!query.api_key.empty()) add("api_key =", query.api_key);
  for (const auto& [key, value] : query.labels) {
    params.push_back(&key);
    params.push_back(&value);
    sql += " AND id IN (SELECT execution_id FROM execution_labels WHERE key = ?" +
           std::to_string(params.size() - 1) + " AND value = ?" + std::to_string(params.size()) +
           ")";
  }
  sql += " ORDER BY id DESC LIMIT ?" + std::to_string(params.size() + 1);

  std::lock_guard lock(mu_);
  auto stmt = Prepare(sql, "list");
  if (!stmt) return std::unexpected(stmt.error());
  for (size_t i = 0; i < params.size(); ++i) stmt->Text(static_cast<int>(i + 1), *params[i]);
  // One row more than the page tells whether another page follows.
  stmt->Int(static_cast<int>(params.size() + 1), static_cast<int64_t>(query.limit + 1));
  auto rows = ReadExecutions(*stmt, "list");
  if (!rows) return std::unexpected(rows.error());
  HistoryPage page;
  page.items = std::move(*rows);
  if (page.items.size() > query.limit) {
    page.items.resize(query.limit);
    page.next_before = page.items.back().id;
  }
  return page;
}

Result<std::vector<ExecutionRecord>> SqliteStore::Unfinished() {
  std::lock_guard lock(mu_);
  auto stmt = Prepare("SELECT " + std::string(kExecutionColumns) +
                          " FROM executions WHERE finished_at IS NULL ORDER BY id",
                      "unfinished");
  if (!stmt) return std::unexpected(stmt.error());
  return ReadExecutions(*stmt, "unfinished");
}

Result<size_t> SqliteStore::Prune(const Retention& retention, size_t batch) {
  auto cutoff = CheckRetention(retention, batch);
  if (!cutoff) return WithBackend(kBackend, cutoff.error());
  std::vector<std::string> bounds;
  // The (keep_count+1)-th newest finished execution and every finished one before it fall
  // outside the count bound.
  if (!cutoff->empty()) bounds.emplace_back("created_at < ?1");
  if (retention.keep_count > 0) {
    bounds.emplace_back(
        "id <= (SELECT id FROM executions WHERE finished_at IS NOT NULL "
        "ORDER BY id DESC LIMIT 1 OFFSET ?2)");
  }
  if (bounds.empty()) return 0;
  std::string sql =
      "DELETE FROM executions WHERE id IN (SELECT id FROM executions "
      "WHERE finished_at IS NOT NULL AND (" +
      bounds[0] + (bounds.size() > 1 ? " OR " + bounds[1] : std::string()) +
      ") ORDER BY id LIMIT ?3)";
  std::lock_guard lock(mu_);
  return Transaction<size_t>("prune", [&]() -> Result<size_t> {
    auto stmt = Prepare(sql, "prune");
    if (!stmt) return std::unexpected(stmt.error());
    if (!cutoff->empty()) stmt->Text(1, *cutoff);
    if (retention.keep_count > 0) stmt->Int(2, static_cast<int64_t>(retention.keep_count));
    stmt->Int(3,
              static_cast<int64_t>(std::min<uint64_t>(batch, std::numeric_limits<int64_t>::max())));
    if (auto r = Done(*stmt, "prune"); !r) return std::unexpected(r.error());
    // Rows the statement deleted itself, not the events and labels the cascade removed.
    return static_cast<size_t>(sqlite3_changes64(db_));
  });
}

}  // namespace

Result<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path) {
  const std::string what = "open " + path;
  if (path.empty()) return Fail(Errc::kParse, "sqlite: the store path is empty");
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (parent.empty()) parent = ".";
  struct stat st {};
  if (::stat(parent.c_str(), &st) != 0) {
    return SysFail("stat", "sqlite: " + what + ": directory " + parent.string());
  }
  if (!S_ISDIR(st.st_mode)) {
    return SysFail("stat", "sqlite: " + what + ": " + parent.string(), ENOTDIR);
  }
  // The history holds programs' output and API key names: only we may read it. SQLite gives
  // its -wal and -shm files the database file's mode.
  {
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!fd.valid()) return SysFail("open", "sqlite: " + what);
  }
  sqlite3* db = nullptr;
  // NOMUTEX: the store serializes every use of the connection with its own mutex.
  const int rc = sqlite3_open_v2(
      path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    Error e = SqlError(db, rc, what, "sqlite3_open_v2");
    sqlite3_close_v2(db);
    return std::unexpected(std::move(e));
  }
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, kBusyTimeoutMs);
  auto store = std::make_unique<SqliteStore>(db, path);
  if (auto r = store->Init(); !r) return std::unexpected(r.error());
  return store;
}

}  // namespace polyrun::store
