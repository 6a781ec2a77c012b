#include "store/store.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <thread>
#include <tuple>

#include "store/records.h"
#include "store/test_postgres.h"

namespace polyrun::store {
namespace {

namespace fs = std::filesystem;

// ---- where each backend's test stores live ----

class Backend {
 public:
  virtual ~Backend() = default;
  // The location of a fresh, empty store.
  virtual Result<std::string> FreshLocation() = 0;
  // Makes the store at `location` look written by a newer polyrun.
  virtual Result<void> SetSchemaVersion(const std::string& location, int version) = 0;
};

// A file in a fresh temporary directory, removed with the directory.
class SqliteBackend : public Backend {
 public:
  ~SqliteBackend() override {
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }
  Result<std::string> FreshLocation() override {
    std::string tmpl = "/tmp/polyrun-store-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) return SysFail("mkdtemp", "sqlite test dir");
    dir_ = tmpl;
    return dir_ + "/history.db";
  }
  Result<void> SetSchemaVersion(const std::string& location, int version) override {
    sqlite3* db = nullptr;
    int rc = sqlite3_open(location.c_str(), &db);
    const std::string sql = "PRAGMA user_version = " + std::to_string(version);
    if (rc == SQLITE_OK) rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
    sqlite3_close(db);
    if (rc != SQLITE_OK) return Fail(Errc::kInternal, sqlite3_errstr(rc));
    return {};
  }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
};

// A fresh database on the run's private server (dropped with the server at the end).
class PostgresBackend : public Backend {
 public:
  Result<std::string> FreshLocation() override {
    auto server = pgtest::SharedTestPostgres();
    if (!server) return std::unexpected(server.error());
    return (*server)->CreateDatabase();
  }
  Result<void> SetSchemaVersion(const std::string& location, int version) override {
    auto r = pgtest::ExecuteSql(location,
                                "UPDATE polyrun_schema SET version = " + std::to_string(version));
    if (!r) return std::unexpected(r.error());
    return {};
  }
};

struct BackendParam {
  std::string name;
  std::function<std::unique_ptr<Backend>()> make;
};
// For test listings: the name, not the bytes.
void PrintTo(const BackendParam& param, std::ostream* os) {
  *os << param.name;
}

// ---- records ----

// Ids and creation times that sort alike: execution n was created n seconds after 12:00.
std::string Id(int n) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "ex_%06d", n);
  return buf;
}
std::string At(int n) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "2024-05-01T%02d:%02d:%02d.000Z", 12 + n / 3600, n / 60 % 60,
                n % 60);
  return buf;
}

ExecutionRecord Execution(int n, std::string language = "python",
                          std::map<std::string, std::string> labels = {},
                          std::string api_key = "") {
  ExecutionRecord e;
  e.id = Id(n);
  e.language = std::move(language);
  e.status = "queued";
  e.labels = std::move(labels);
  e.api_key = std::move(api_key);
  e.created_at = At(n);
  return e;
}

EventRecord Event(const std::string& id, uint64_t seq, std::string kind = "stdout",
                  std::string data = "", std::string payload = "", std::string stream = "") {
  return EventRecord{
      id, seq, seq * 10, std::move(kind), std::move(stream), std::move(data), std::move(payload)};
}

auto Fields(const ExecutionRecord& e) {
  return std::tie(e.id, e.language, e.status, e.labels, e.api_key, e.created_at, e.finished_at,
                  e.result);
}
auto Fields(const EventRecord& e) {
  return std::tie(e.execution_id, e.seq, e.t_ms, e.kind, e.stream, e.data, e.payload);
}

std::vector<std::string> Ids(const std::vector<ExecutionRecord>& records) {
  std::vector<std::string> out;
  out.reserve(records.size());
  for (const auto& r : records) out.push_back(r.id);
  return out;
}
std::vector<uint64_t> Seqs(const std::vector<EventRecord>& events) {
  std::vector<uint64_t> out;
  out.reserve(events.size());
  for (const auto& e : events) out.push_back(e.seq);
  return out;
}

#define ASSERT_OK(expr)                                       \
  do {                                                        \
    auto&& r_ = (expr);                                       \
    ASSERT_TRUE(r_) << #expr << ": " << r_.error().message(); \
  } while (0)

// ---- the conformance suite: every backend behaves alike ----

class StoreTest : public ::testing::TestWithParam<BackendParam> {
 protected:
  void SetUp() override {
    backend_ = GetParam().make();
    auto location = backend_->FreshLocation();
    ASSERT_TRUE(location) << location.error().message();
    location_ = *location;
    store_ = Open();
    ASSERT_NE(store_, nullptr);
  }
  void TearDown() override {
    store_.reset();
    backend_.reset();
  }

  std::unique_ptr<Store> Open() {
    auto store = OpenStore(location_);
    EXPECT_TRUE(store) << store.error().message();
    return store ? std::move(*store) : nullptr;
  }

  // Begins execution n with its "queued" event.
  void Begin(const ExecutionRecord& e) { ASSERT_OK(store_->Begin(e, {Event(e.id, 0, "queued")})); }
  void FinishOk(const std::string& id, uint64_t seq) {
    ASSERT_OK(store_->Finish(id, "ok", "2024-05-02T00:00:00.000Z", R"({"status":"ok"})",
                             {Event(id, seq, "finished")}));
  }
  ExecutionRecord MustGet(const std::string& id) {
    auto got = store_->Get(id);
    EXPECT_TRUE(got) << got.error().message();
    EXPECT_TRUE(got && got->has_value()) << id;
    return got && got->has_value() ? **got : ExecutionRecord{};
  }
  std::vector<EventRecord> MustEvents(const std::string& id, int64_t after = -1) {
    auto events = store_->Events(id, after);
    EXPECT_TRUE(events) << events.error().message();
    return events ? *events : std::vector<EventRecord>{};
  }
  HistoryPage MustList(const HistoryQuery& query) {
    auto page = store_->List(query);
    EXPECT_TRUE(page) << page.error().message();
    return page ? *page : HistoryPage{};
  }

  std::unique_ptr<Backend> backend_;
  std::string location_;
  std::unique_ptr<Store> store_;
};

TEST_P(StoreTest, BackendIsTheOneTheLocationNames) {
  EXPECT_EQ(store_->backend(), GetParam().name);
}

TEST_P(StoreTest, RoundTripsEveryField) {
  ExecutionRecord e = Execution(1, "python", {{"team", "core"}, {"ci", "yes"}}, "ci-bot");
  std::vector<EventRecord> events = {Event(e.id, 0, "queued", "", R"({"position":0})")};
  ASSERT_OK(store_->Begin(e, events));
  EXPECT_EQ(Fields(MustGet(e.id)), Fields(e));

  events.push_back(Event(e.id, 1, "started"));
  events.push_back(Event(e.id, 2, "compile_output", "main.c:1: warning", "", "stderr"));
  events.push_back(Event(e.id, 3, "stdout", "hello\n"));
  ASSERT_OK(store_->Append({events[1], events[2], events[3]}, {{e.id, "running"}}));
  e.status = "running";
  EXPECT_EQ(Fields(MustGet(e.id)), Fields(e));

  events.push_back(Event(e.id, 4, "finished", "", R"({"status":"ok","exit_code":0})"));
  ASSERT_OK(store_->Finish(e.id, "ok", "2024-05-01T12:00:02.345Z",
                           R"({"status":"ok","stdout":"hello\n"})", {events[4]}));
  e.status = "ok";
  e.finished_at = "2024-05-01T12:00:02.345Z";
  e.result = R"({"status":"ok","stdout":"hello\n"})";
  EXPECT_EQ(Fields(MustGet(e.id)), Fields(e));

  auto got = MustEvents(e.id);
  ASSERT_EQ(got.size(), events.size());
  for (size_t i = 0; i < events.size(); ++i) EXPECT_EQ(Fields(got[i]), Fields(events[i])) << i;
}

TEST_P(StoreTest, GetAndEventsOfAnUnknownIdAreEmpty) {
  auto got = store_->Get(Id(404));
  ASSERT_TRUE(got) << got.error().message();
  EXPECT_FALSE(got->has_value());
  EXPECT_TRUE(MustEvents(Id(404)).empty());
}

TEST_P(StoreTest, EventsAfterSeqAndLimit) {
  ExecutionRecord e = Execution(1);
  std::vector<EventRecord> events;
  events.reserve(10);
  for (uint64_t seq = 0; seq < 10; ++seq) events.push_back(Event(e.id, seq));
  ASSERT_OK(store_->Begin(e, events));
  EXPECT_EQ(Seqs(MustEvents(e.id)), (std::vector<uint64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(Seqs(MustEvents(e.id, 4)), (std::vector<uint64_t>{5, 6, 7, 8, 9}));
  auto limited = store_->Events(e.id, 4, 2);
  ASSERT_TRUE(limited) << limited.error().message();
  EXPECT_EQ(Seqs(*limited), (std::vector<uint64_t>{5, 6}));
  auto first = store_->Events(e.id, -1, 1);
  ASSERT_TRUE(first);
  EXPECT_EQ(Seqs(*first), (std::vector<uint64_t>{0}));
  EXPECT_TRUE(MustEvents(e.id, 9).empty());
}

TEST_P(StoreTest, BinaryDataAndUtf8RoundTrip) {
  std::string every_byte;
  for (int rep = 0; rep < 2; ++rep) {
    for (int b = 0; b < 256; ++b) every_byte.push_back(static_cast<char>(b));
  }
  const std::string nuls("\0\0a\0b\0", 6);
  const std::string payload = R"({"text":"héllo wörld — 日本語 🎉 \u0000"})";
  ExecutionRecord e = Execution(1, "python", {{"名前", "値 ✓"}, {"emoji", "🎉"}}, "clé");
  std::vector<EventRecord> events = {Event(e.id, 0, "queued"), Event(e.id, 1, "stdout", every_byte),
                                     Event(e.id, 2, "stderr", nuls, payload),
                                     Event(e.id, 3, "stdout", "")};
  ASSERT_OK(store_->Begin(e, events));
  ASSERT_OK(store_->Finish(e.id, "ok", At(2), R"({"stdout":"日本語"})", {}));
  e.status = "ok";
  e.finished_at = At(2);
  e.result = R"({"stdout":"日本語"})";
  EXPECT_EQ(Fields(MustGet(e.id)), Fields(e));
  auto got = MustEvents(e.id);
  ASSERT_EQ(got.size(), events.size());
  for (size_t i = 0; i < events.size(); ++i) EXPECT_EQ(Fields(got[i]), Fields(events[i])) << i;
  EXPECT_EQ(got[1].data.size(), 512u);
  EXPECT_EQ(got[2].data.size(), 6u);

  HistoryQuery q;
  q.labels = {{"名前", "値 ✓"}};
  EXPECT_EQ(Ids(MustList(q).items), (std::vector<std::string>{e.id}));
}

TEST_P(StoreTest, TextABackendCannotHoldIsRejectedBeforeAnythingIsStored) {
  ExecutionRecord e = Execution(1);
  e.labels = {{"bad", "\xff\xfe"}};
  auto r = store_->Begin(e, {});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kInvalidArgument);
  EXPECT_NE(r.error().message().find("label bad"), std::string::npos) << r.error().message();

  e.labels = {};
  ASSERT_OK(store_->Begin(e, {}));
  auto nul = store_->Append({Event(e.id, 0, "stdout", "", std::string("{\0}", 3))});
  ASSERT_FALSE(nul);
  EXPECT_EQ(nul.error().code, Errc::kInvalidArgument);
  EXPECT_NE(nul.error().message().find("payload"), std::string::npos) << nul.error().message();
  EXPECT_TRUE(MustEvents(e.id).empty());

  ExecutionRecord done = Execution(2);
  done.finished_at = At(3);
  auto finished = store_->Begin(done, {});
  ASSERT_FALSE(finished);
  EXPECT_EQ(finished.error().code, Errc::kInvalidArgument);
}

TEST_P(StoreTest, DuplicateSeqFailsAndAppendsNothing) {
  ExecutionRecord a = Execution(1), b = Execution(2);
  Begin(a);
  Begin(b);
  // Good events of two executions and a status change, then a duplicate: none of it lands.
  auto r = store_->Append({Event(a.id, 1), Event(b.id, 1), Event(a.id, 0)}, {{b.id, "running"}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kInvalidArgument);
  EXPECT_NE(r.error().message().find(a.id + "/0"), std::string::npos) << r.error().message();
  EXPECT_NE(r.error().message().find(GetParam().name + ": append"), std::string::npos)
      << r.error().message();
  EXPECT_EQ(Seqs(MustEvents(a.id)), (std::vector<uint64_t>{0}));
  EXPECT_EQ(Seqs(MustEvents(b.id)), (std::vector<uint64_t>{0}));
  EXPECT_EQ(MustGet(b.id).status, "queued");

  // A duplicate within one call.
  auto twice = store_->Append({Event(a.id, 1), Event(a.id, 1)});
  ASSERT_FALSE(twice);
  EXPECT_NE(twice.error().message().find(a.id + "/1"), std::string::npos);
  EXPECT_EQ(Seqs(MustEvents(a.id)), (std::vector<uint64_t>{0}));

  // The store is still usable after the rolled-back transaction.
  ASSERT_OK(store_->Append({Event(a.id, 1), Event(b.id, 1)}, {{b.id, "running"}}));
  EXPECT_EQ(Seqs(MustEvents(a.id)), (std::vector<uint64_t>{0, 1}));
  EXPECT_EQ(MustGet(b.id).status, "running");
}

TEST_P(StoreTest, BeginWithADuplicateIdFailsAndChangesNothing) {
  ExecutionRecord e = Execution(1, "python", {{"a", "1"}});
  Begin(e);
  ExecutionRecord again = Execution(1, "ruby", {{"b", "2"}});
  auto r = store_->Begin(again, {Event(e.id, 1)});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kInvalidArgument);
  EXPECT_NE(r.error().message().find(e.id), std::string::npos) << r.error().message();
  EXPECT_EQ(Fields(MustGet(e.id)), Fields(e));
  EXPECT_EQ(Seqs(MustEvents(e.id)), (std::vector<uint64_t>{0}));
  HistoryQuery q;
  q.labels = {{"b", "2"}};
  EXPECT_TRUE(MustList(q).items.empty());
}

TEST_P(StoreTest, AppendToAnUnknownOrFinishedExecutionFails) {
  auto unknown = store_->Append({Event(Id(9), 0)});
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, Errc::kInvalidArgument);
  EXPECT_NE(unknown.error().message().find(Id(9) + "/0"), std::string::npos)
      << unknown.error().message();
  auto unknown_status = store_->Append({}, {{Id(9), "running"}});
  ASSERT_FALSE(unknown_status);
  EXPECT_NE(unknown_status.error().message().find(Id(9)), std::string::npos);
  auto got = store_->Get(Id(9));
  ASSERT_TRUE(got);
  EXPECT_FALSE(got->has_value());

  ExecutionRecord done = Execution(1), open = Execution(2);
  Begin(done);
  Begin(open);
  FinishOk(done.id, 1);
  auto finished = store_->Append({Event(done.id, 2)});
  ASSERT_FALSE(finished);
  EXPECT_EQ(finished.error().code, Errc::kInvalidArgument);
  EXPECT_NE(finished.error().message().find(done.id + "/2"), std::string::npos)
      << finished.error().message();
  // Together with good events of another execution: nothing of either lands.
  auto mixed = store_->Append({Event(open.id, 1), Event(done.id, 2)}, {{open.id, "running"}});
  ASSERT_FALSE(mixed);
  EXPECT_EQ(Seqs(MustEvents(done.id)), (std::vector<uint64_t>{0, 1}));
  EXPECT_EQ(Seqs(MustEvents(open.id)), (std::vector<uint64_t>{0}));
  EXPECT_EQ(MustGet(open.id).status, "queued");
  auto status_only = store_->Append({}, {{done.id, "running"}});
  ASSERT_FALSE(status_only);
  EXPECT_EQ(MustGet(done.id).status, "ok");
}

TEST_P(StoreTest, FinishTwiceOrUnknownFails) {
  auto unknown = store_->Finish(Id(9), "ok", At(1), "{}", {});
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, Errc::kInvalidArgument);
  EXPECT_NE(unknown.error().message().find(Id(9)), std::string::npos);

  ExecutionRecord e = Execution(1);
  Begin(e);
  FinishOk(e.id, 1);
  auto again = store_->Finish(e.id, "runtime_error", At(5), R"({"status":"runtime_error"})",
                              {Event(e.id, 2, "finished")});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, Errc::kInvalidArgument);
  EXPECT_NE(again.error().message().find(e.id), std::string::npos);
  ExecutionRecord got = MustGet(e.id);
  EXPECT_EQ(got.status, "ok");
  EXPECT_EQ(got.result, R"({"status":"ok"})");
  EXPECT_EQ(Seqs(MustEvents(e.id)), (std::vector<uint64_t>{0, 1}));
}

TEST_P(StoreTest, AppendsStatusMapSetsTheLatestStatus) {
  ExecutionRecord a = Execution(1), b = Execution(2);
  Begin(a);
  Begin(b);
  ASSERT_OK(store_->Append({}, {{a.id, "running"}}));
  EXPECT_EQ(MustGet(a.id).status, "running");
  EXPECT_EQ(MustGet(b.id).status, "queued");
  ASSERT_OK(
      store_->Append({Event(a.id, 1), Event(b.id, 1)}, {{a.id, "compiling"}, {b.id, "running"}}));
  EXPECT_EQ(MustGet(a.id).status, "compiling");
  EXPECT_EQ(MustGet(b.id).status, "running");
}

TEST_P(StoreTest, ListFiltersByEveryGivenField) {
  Begin(Execution(1, "python", {{"team", "core"}, {"env", "prod"}}, "key-a"));
  Begin(Execution(2, "python", {{"team", "core"}, {"env", "dev"}}, "key-b"));
  Begin(Execution(3, "ruby", {{"team", "core"}, {"env", "prod"}}, "key-a"));
  Begin(Execution(4, "python", {{"team", "web"}, {"env", "prod"}}, "key-a"));
  Begin(Execution(5, "python", {{"team", "core"}, {"env", "prod"}, {"x", "y"}}, "key-b"));
  FinishOk(Id(5), 1);

  HistoryQuery q;
  EXPECT_EQ(Ids(MustList(q).items), (std::vector<std::string>{Id(5), Id(4), Id(3), Id(2), Id(1)}));
  q.labels = {{"team", "core"}, {"env", "prod"}};
  EXPECT_EQ(Ids(MustList(q).items), (std::vector<std::string>{Id(5), Id(3), Id(1)}));
  q.language = "python";
  EXPECT_EQ(Ids(MustList(q).items), (std::vector<std::string>{Id(5), Id(1)}));
  q.status = "queued";
  EXPECT_EQ(Ids(MustList(q).items), (std::vector<std::string>{Id(1)}));
  q.status = "ok";
  auto page = MustList(q);
  ASSERT_EQ(Ids(page.items), (std::vector<std::string>{Id(5)}));
  EXPECT_EQ(page.items[0].labels,
            (std::map<std::string, std::string>{{"team", "core"}, {"env", "prod"}, {"x", "y"}}));
  EXPECT_EQ(page.next_before, "");

  HistoryQuery by_key;
  by_key.api_key = "key-a";
  EXPECT_EQ(Ids(MustList(by_key).items), (std::vector<std::string>{Id(4), Id(3), Id(1)}));
  by_key.language = "ruby";
  EXPECT_EQ(Ids(MustList(by_key).items), (std::vector<std::string>{Id(3)}));

  HistoryQuery none;
  none.labels = {{"team", "core"}, {"env", "nowhere"}};
  EXPECT_TRUE(MustList(none).items.empty());
  none = {};
  none.language = "go";
  EXPECT_TRUE(MustList(none).items.empty());
  HistoryQuery value_of_another_key;  // a value must belong to its key
  value_of_another_key.labels = {{"team", "prod"}};
  EXPECT_TRUE(MustList(value_of_another_key).items.empty());
}

TEST_P(StoreTest, ListPaginatesNewestFirstWithoutGapsOrDuplicates) {
  // Created out of id order: the order is the ids', not the insertion's.
  for (int n : {7, 1, 25, 13}) Begin(Execution(n));
  for (int n = 1; n <= 25; ++n) {
    if (n != 7 && n != 1 && n != 25 && n != 13) Begin(Execution(n));
  }
  HistoryQuery q;
  q.limit = 10;
  std::vector<std::string> all;
  std::vector<size_t> sizes;
  for (int page_no = 0; page_no < 5; ++page_no) {
    HistoryPage page = MustList(q);
    sizes.push_back(page.items.size());
    for (const auto& e : page.items) all.push_back(e.id);
    if (page.next_before.empty()) break;
    EXPECT_EQ(page.next_before, page.items.back().id);
    q.before = page.next_before;
  }
  EXPECT_EQ(sizes, (std::vector<size_t>{10, 10, 5}));
  std::vector<std::string> expected;
  for (int n = 25; n >= 1; --n) expected.push_back(Id(n));
  EXPECT_EQ(all, expected);

  // A last page that is exactly full says there is no more.
  q = {};
  q.limit = 5;
  q.before = Id(6);
  HistoryPage last = MustList(q);
  EXPECT_EQ(last.items.size(), 5u);
  EXPECT_EQ(last.next_before, "");
}

TEST_P(StoreTest, ListRejectsALimitOutsideOneToAThousand) {
  Begin(Execution(1));
  for (size_t limit : {size_t{0}, size_t{1001}}) {
    HistoryQuery q;
    q.limit = limit;
    auto r = store_->List(q);
    ASSERT_FALSE(r) << limit;
    EXPECT_EQ(r.error().code, Errc::kInvalidArgument);
    EXPECT_NE(r.error().message().find("limit"), std::string::npos) << r.error().message();
  }
  for (size_t limit : {size_t{1}, size_t{1000}}) {
    HistoryQuery q;
    q.limit = limit;
    EXPECT_EQ(MustList(q).items.size(), 1u);
  }
}

TEST_P(StoreTest, UnfinishedListsOnlyUnfinishedOldestFirst) {
  for (int n : {3, 1, 2, 4}) Begin(Execution(n));
  FinishOk(Id(2), 1);
  ASSERT_OK(store_->Append({}, {{Id(4), "running"}}));
  auto unfinished = store_->Unfinished();
  ASSERT_TRUE(unfinished) << unfinished.error().message();
  EXPECT_EQ(Ids(*unfinished), (std::vector<std::string>{Id(1), Id(3), Id(4)}));
  EXPECT_EQ((*unfinished)[2].status, "running");
}

TEST_P(StoreTest, PruneByAgeDeletesOnlyOlderFinishedExecutionsWithTheirEventsAndLabels) {
  for (int n = 1; n <= 6; ++n) {
    Begin(Execution(n, "python", {{"n", std::to_string(n)}}));
    if (n != 2 && n != 6) FinishOk(Id(n), 1);
  }
  Retention age;
  age.older_than = At(4);  // 1 and 3 are finished and older; 2 is older but in flight
  auto pruned = store_->Prune(age);
  ASSERT_TRUE(pruned) << pruned.error().message();
  EXPECT_EQ(*pruned, 2u);
  for (int gone : {1, 3}) {
    auto got = store_->Get(Id(gone));
    ASSERT_TRUE(got);
    EXPECT_FALSE(got->has_value()) << gone;
    EXPECT_TRUE(MustEvents(Id(gone)).empty()) << gone;
    HistoryQuery q;
    q.labels = {{"n", std::to_string(gone)}};
    EXPECT_TRUE(MustList(q).items.empty()) << gone;
  }
  HistoryQuery all;
  EXPECT_EQ(Ids(MustList(all).items), (std::vector<std::string>{Id(6), Id(5), Id(4), Id(2)}));
  EXPECT_EQ(Seqs(MustEvents(Id(4))), (std::vector<uint64_t>{0, 1}));

  // Without milliseconds the bound means the same instant.
  age.older_than = At(5).substr(0, 19) + "Z";
  pruned = store_->Prune(age);
  ASSERT_TRUE(pruned) << pruned.error().message();
  EXPECT_EQ(*pruned, 1u);  // 4
  EXPECT_EQ(Ids(MustList(all).items), (std::vector<std::string>{Id(6), Id(5), Id(2)}));
}

TEST_P(StoreTest, PruneByCountKeepsTheNewestFinished) {
  for (int n = 1; n <= 10; ++n) {
    Begin(Execution(n));
    if (n != 3 && n != 9) FinishOk(Id(n), 1);
  }
  Retention count;
  count.keep_count = 4;  // finished: 1 2 4 5 6 7 8 10 → keep 6 7 8 10
  auto pruned = store_->Prune(count);
  ASSERT_TRUE(pruned) << pruned.error().message();
  EXPECT_EQ(*pruned, 4u);
  HistoryQuery all;
  EXPECT_EQ(Ids(MustList(all).items),
            (std::vector<std::string>{Id(10), Id(9), Id(8), Id(7), Id(6), Id(3)}));
  pruned = store_->Prune(count);
  ASSERT_TRUE(pruned);
  EXPECT_EQ(*pruned, 0u);
  // Either bound prunes: age takes 6 as well.
  count.older_than = At(7);
  pruned = store_->Prune(count);
  ASSERT_TRUE(pruned);
  EXPECT_EQ(*pruned, 1u);
  EXPECT_EQ(Ids(MustList(all).items),
            (std::vector<std::string>{Id(10), Id(9), Id(8), Id(7), Id(3)}));
}

TEST_P(StoreTest, PruneDeletesAtMostABatchOldestFirst) {
  for (int n = 1; n <= 10; ++n) {
    Begin(Execution(n));
    if (n != 5) FinishOk(Id(n), 1);
  }
  Retention everything;
  everything.older_than = "2100-01-01T00:00:00.000Z";
  auto first = store_->Prune(everything, 3);
  ASSERT_TRUE(first) << first.error().message();
  EXPECT_EQ(*first, 3u);
  HistoryQuery all;
  EXPECT_EQ(Ids(MustList(all).items),
            (std::vector<std::string>{Id(10), Id(9), Id(8), Id(7), Id(6), Id(5), Id(4)}));
  std::vector<size_t> counts;
  for (;;) {
    auto n = store_->Prune(everything, 3);
    ASSERT_TRUE(n) << n.error().message();
    counts.push_back(*n);
    if (*n < 3) break;
  }
  EXPECT_EQ(counts, (std::vector<size_t>{3, 3, 0}));
  EXPECT_EQ(Ids(MustList(all).items), (std::vector<std::string>{Id(5)}));
}

TEST_P(StoreTest, PruneNeverTouchesUnfinishedAndValidatesItsArguments) {
  for (int n = 1; n <= 3; ++n) Begin(Execution(n));
  Retention everything;
  everything.older_than = "2100-01-01T00:00:00Z";
  everything.keep_count = 1;
  auto pruned = store_->Prune(everything);
  ASSERT_TRUE(pruned) << pruned.error().message();
  EXPECT_EQ(*pruned, 0u);
  auto unfinished = store_->Unfinished();
  ASSERT_TRUE(unfinished);
  EXPECT_EQ(unfinished->size(), 3u);

  FinishOk(Id(1), 1);
  auto unbounded = store_->Prune(Retention{});
  ASSERT_TRUE(unbounded);
  EXPECT_EQ(*unbounded, 0u);
  auto zero_batch = store_->Prune(everything, 0);
  ASSERT_FALSE(zero_batch);
  EXPECT_EQ(zero_batch.error().code, Errc::kInvalidArgument);
  EXPECT_NE(zero_batch.error().message().find("batch"), std::string::npos);
  Retention bad;
  bad.older_than = "yesterday";
  auto bad_age = store_->Prune(bad);
  ASSERT_FALSE(bad_age);
  EXPECT_EQ(bad_age.error().code, Errc::kInvalidArgument);
  EXPECT_NE(bad_age.error().message().find("older_than"), std::string::npos);
  EXPECT_TRUE(MustGet(Id(1)).id == Id(1));
}

TEST_P(StoreTest, PersistsAcrossCloseAndReopen) {
  ExecutionRecord done = Execution(1, "c", {{"k", "v"}}, "key");
  ExecutionRecord open = Execution(2);
  Begin(done);
  ASSERT_OK(store_->Append({Event(done.id, 1, "stdout", std::string("\0bin", 4))}));
  FinishOk(done.id, 2);
  Begin(open);
  store_.reset();

  store_ = Open();
  ASSERT_NE(store_, nullptr);
  ExecutionRecord got = MustGet(done.id);
  EXPECT_EQ(got.status, "ok");
  EXPECT_EQ(got.labels, done.labels);
  EXPECT_EQ(got.api_key, "key");
  auto events = MustEvents(done.id);
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[1].data, std::string("\0bin", 4));
  auto unfinished = store_->Unfinished();
  ASSERT_TRUE(unfinished);
  EXPECT_EQ(Ids(*unfinished), (std::vector<std::string>{open.id}));
  // And it goes on where it left off.
  ASSERT_OK(store_->Append({Event(open.id, 1)}));
  FinishOk(open.id, 2);
}

TEST_P(StoreTest, ANewerSchemaVersionRefusesToOpenNamingBoth) {
  store_.reset();
  ASSERT_OK(backend_->SetSchemaVersion(location_, 99));
  auto store = OpenStore(location_);
  ASSERT_FALSE(store);
  const std::string message = store.error().message();
  EXPECT_NE(message.find("99"), std::string::npos) << message;
  EXPECT_NE(message.find("(" + std::to_string(kSchemaVersion) + ")"), std::string::npos) << message;
  // The same version opens.
  ASSERT_OK(backend_->SetSchemaVersion(location_, kSchemaVersion));
  store_ = Open();
  EXPECT_NE(store_, nullptr);
}

TEST_P(StoreTest, ConcurrentWritersAndAReaderLoseNothing) {
  constexpr int kWriters = 4;
  constexpr int kPerWriter = 20;
  constexpr uint64_t kAppends = 5;  // of 2 events each
  std::unique_ptr<Store> reader_store = Open();
  ASSERT_NE(reader_store, nullptr);
  std::atomic<bool> done{false};
  std::atomic<int> failures{0};
  std::atomic<int> reads{0};

  std::vector<std::thread> writers;
  writers.reserve(kWriters);
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      for (int i = 0; i < kPerWriter; ++i) {
        const ExecutionRecord e = Execution(1 + w * kPerWriter + i, "lang" + std::to_string(w));
        bool ok = static_cast<bool>(store_->Begin(e, {Event(e.id, 0, "queued")}));
        for (uint64_t a = 0; ok && a < kAppends; ++a) {
          ok = static_cast<bool>(store_->Append(
              {Event(e.id, 1 + 2 * a, "stdout", "x"), Event(e.id, 2 + 2 * a, "stderr", "y")},
              {{e.id, "running"}}));
        }
        ok = ok && store_->Finish(e.id, "ok", At(9999), "{}",
                                  {Event(e.id, 1 + 2 * kAppends, "finished")});
        if (!ok) ++failures;
      }
    });
  }
  std::thread reader([&] {
    while (!done) {
      HistoryQuery q;
      q.limit = 100;
      auto page = reader_store->List(q);
      if (!page) {
        ++failures;
        continue;
      }
      for (const auto& e : page->items) {
        if (!reader_store->Get(e.id) || !reader_store->Events(e.id, -1)) ++failures;
      }
      ++reads;
    }
  });
  for (auto& t : writers) t.join();
  done = true;
  reader.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GT(reads.load(), 0);

  HistoryQuery all;
  all.limit = 1000;
  auto page = MustList(all);
  ASSERT_EQ(page.items.size(), static_cast<size_t>(kWriters * kPerWriter));
  std::set<std::string> ids;
  for (const auto& e : page.items) {
    ids.insert(e.id);
    EXPECT_EQ(e.status, "ok") << e.id;
    auto events = MustEvents(e.id);
    ASSERT_EQ(events.size(), 2 * kAppends + 2) << e.id;
    for (uint64_t s = 0; s < events.size(); ++s) EXPECT_EQ(events[s].seq, s) << e.id;
  }
  EXPECT_EQ(ids.size(), page.items.size());
}

TEST_P(StoreTest, ACommittedFinishSurvivesTheWriterBeingKilled) {
  store_.reset();
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // No gtest macros and no destructors here: the point is dying mid-flight.
    auto store = OpenStore(location_);
    if (!store) ::_exit(2);
    const ExecutionRecord done = Execution(1), open = Execution(2);
    if (!(*store)->Begin(done, {Event(done.id, 0, "queued")})) ::_exit(3);
    if (!(*store)->Finish(done.id, "ok", At(3), R"({"status":"ok"})", {Event(done.id, 1)})) {
      ::_exit(4);
    }
    if (!(*store)->Begin(open, {Event(open.id, 0, "queued")})) ::_exit(5);
    ::raise(SIGKILL);
    ::_exit(6);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status)) << "child exited with " << WEXITSTATUS(status);
  ASSERT_EQ(WTERMSIG(status), SIGKILL);

  store_ = Open();
  ASSERT_NE(store_, nullptr);
  ExecutionRecord got = MustGet(Id(1));
  EXPECT_EQ(got.status, "ok");
  EXPECT_EQ(got.finished_at, At(3));
  EXPECT_EQ(Seqs(MustEvents(Id(1))), (std::vector<uint64_t>{0, 1}));
  auto unfinished = store_->Unfinished();
  ASSERT_TRUE(unfinished);
  EXPECT_EQ(Ids(*unfinished), (std::vector<std::string>{Id(2)}));
}

INSTANTIATE_TEST_SUITE_P(
    Backends, StoreTest,
    ::testing::Values(
        BackendParam{"sqlite", [] { return std::unique_ptr<Backend>(new SqliteBackend); }},
        BackendParam{"postgresql", [] { return std::unique_ptr<Backend>(new PostgresBackend); }}),
    [](const ::testing::TestParamInfo<BackendParam>& param) { return param.param.name; });

// ---- what only one backend has ----

TEST(StoreLocationTest, AnEmptyLocationOrAnUnknownSchemeIsAParseError) {
  for (const char* location : {"", "mysql://db/history", "sqlite://x.db"}) {
    auto store = OpenStore(location);
    ASSERT_FALSE(store) << location;
    EXPECT_EQ(store.error().code, Errc::kParse) << location;
  }
}

class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto location = backend_.FreshLocation();
    ASSERT_TRUE(location) << location.error().message();
    path_ = *location;
  }
  SqliteBackend backend_;
  std::string path_;
};

TEST_F(SqliteStoreTest, AMissingDirectoryIsAnErrorNamingIt) {
  const std::string missing = backend_.dir() + "/no/such";
  auto store = OpenStore(missing + "/history.db");
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, Errc::kSyscall);
  EXPECT_NE(store.error().message().find(missing), std::string::npos) << store.error().message();
  EXPECT_FALSE(fs::exists(backend_.dir() + "/no")) << "the store creates no directories";
}

TEST_F(SqliteStoreTest, TheFilesAreOnlyOursAndInWalMode) {
  auto store = OpenStore(path_);
  ASSERT_TRUE(store) << store.error().message();
  ASSERT_OK((*store)->Begin(Execution(1), {Event(Id(1), 0)}));
  for (const std::string& file : {path_, path_ + "-wal"}) {
    struct stat st {};
    ASSERT_EQ(::stat(file.c_str(), &st), 0) << file;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << file;
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &stmt, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)), "wal");
  sqlite3_finalize(stmt);
  sqlite3_close(db);
}

TEST_F(SqliteStoreTest, AFileThatIsNotADatabaseIsRefused) {
  std::ofstream(path_)
      << "this is not an SQLite database, and it is long enough to have a header.\n";
  auto store = OpenStore(path_);
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, Errc::kParse) << store.error().message();
  EXPECT_NE(store.error().message().find(path_), std::string::npos) << store.error().message();
}

class PostgresStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto location = backend_.FreshLocation();
    ASSERT_TRUE(location) << location.error().message();
    uri_ = *location;
  }
  PostgresBackend backend_;
  std::string uri_;
};

TEST_F(PostgresStoreTest, ThePostgresSchemeSelectsPostgresToo) {
  ASSERT_TRUE(uri_.starts_with("postgresql://"));
  auto store = OpenStore("postgres://" + uri_.substr(std::string_view("postgresql://").size()));
  ASSERT_TRUE(store) << store.error().message();
  EXPECT_EQ((*store)->backend(), "postgresql");
}

TEST_F(PostgresStoreTest, ReconnectsOnceWhenTheServerDroppedTheConnection) {
  auto store = OpenStore(uri_);
  ASSERT_TRUE(store) << store.error().message();
  ASSERT_OK((*store)->Begin(Execution(1), {Event(Id(1), 0)}));
  auto killed =
      pgtest::ExecuteSql(uri_,
                         "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                         "WHERE datname = current_database() AND pid <> pg_backend_pid()");
  ASSERT_TRUE(killed) << killed.error().message();
  ASSERT_EQ(*killed, "1");
  ASSERT_OK((*store)->Append({Event(Id(1), 1)}, {{Id(1), "running"}}));
  auto got = (*store)->Get(Id(1));
  ASSERT_TRUE(got) << got.error().message();
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->status, "running");
}

TEST(PostgresLocationTest, ABadUriIsAParseErrorAndNoServerASyscallError) {
  auto bad = OpenStore("postgresql://polyrun@/db?no_such_option=1");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, Errc::kParse) << bad.error().message();
  auto nobody = OpenStore("postgresql://polyrun@/db?host=/nonexistent-polyrun-dir&port=1");
  ASSERT_FALSE(nobody);
  EXPECT_EQ(nobody.error().code, Errc::kSyscall) << nobody.error().message();
  EXPECT_EQ(nobody.error().syscall, "PQconnectdb");
}

}  // namespace
}  // namespace polyrun::store
