#include "engine/execution_service.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <stdlib.h>
#include <unistd.h>

#include <condition_variable>
#include <filesystem>
#include <future>

#include "engine/engine.h"

namespace polyrun::engine {
namespace {

// Emits what Engine::Run emits, numbered the same way, with a body chosen by the test.
class FakeRun {
 public:
  FakeRun(const ExecutionRequest& req, const EventSink& sink) : req_(req), sink_(sink) {
    Emit(Event::Kind::kQueued, QueuedPayload(req, req.created_at));
    Emit(Event::Kind::kStarted, {{"started_at", NowRfc3339()}});
  }
  void Out(const std::string& text) { Emit(Event::Kind::kStdout, nullptr, text); }
  ExecutionResult Finish(Status s, const std::string& reason = "") {
    Emit(Event::Kind::kFinished,
         {{"status", StatusName(s)}, {"reason", reason}, {"finished_at", NowRfc3339()}});
    return Fold(events_);
  }

 private:
  void Emit(Event::Kind kind, nlohmann::json payload, std::string data = {}) {
    Event e;
    e.execution_id = req_.id;
    e.seq = events_.size() + 1;
    e.kind = kind;
    e.payload = std::move(payload);
    e.data = std::move(data);
    sink_(e);
    events_.push_back(std::move(e));
  }
  const ExecutionRequest& req_;
  const EventSink& sink_;
  std::vector<Event> events_;
};

// Blocks runs until released; a run whose cancel fd fires finishes `cancelled`.
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  int started = 0;

  void Open() {
    std::lock_guard l(mu);
    open = true;
    cv.notify_all();
  }
  void WaitStarted(int n) {
    std::unique_lock l(mu);
    cv.wait(l, [&] { return started >= n; });
  }
  ExecutionResult Run(const ExecutionRequest& req, const EventSink& sink) {
    FakeRun run(req, sink);
    {
      std::lock_guard l(mu);
      ++started;
      cv.notify_all();
    }
    for (;;) {
      {
        std::lock_guard l(mu);
        if (open) break;
      }
      pollfd p{req.cancel_fd, POLLIN, 0};
      if (::poll(&p, 1, 5) > 0) return run.Finish(Status::kCancelled, "run cancelled");
    }
    run.Out("hi\n");
    return run.Finish(Status::kOk);
  }
};

class ExecutionServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/polyrun-service-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto s = store::OpenStore(dir_ + "/polyrun.db");
    ASSERT_TRUE(s) << s.error().message();
    store_ = std::move(*s);
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  ExecutionRequest Request() {
    ExecutionRequest r;
    r.language = "python";
    r.code = "print(1)";
    r.labels = {{"artifact_id", "a1"}};
    return r;
  }

  // Waits (on the events, not a clock) until `id` has finished; returns every event seen.
  std::vector<Event> WaitFinished(ExecutionService& svc, const std::string& id) {
    std::promise<void> done;
    std::vector<Event> seen;
    std::mutex mu;
    auto sub = svc.Subscribe(id, 0, [&](const Event& e) {
      std::lock_guard l(mu);
      seen.push_back(e);
      if (e.kind == Event::Kind::kFinished) done.set_value();
    });
    EXPECT_TRUE(sub) << sub.error().message();
    done.get_future().wait();
    std::lock_guard l(mu);
    return seen;
  }

  std::string dir_;
  std::unique_ptr<store::Store> store_;
};

TEST_F(ExecutionServiceTest, ARunIsStoredAndItsResultIsTheFoldOfItsEvents) {
  Gate gate;
  gate.Open();
  ExecutionService svc([&](const auto& r, const auto& s) { return gate.Run(r, s); }, *store_,
                       {1, 4, nullptr});
  auto a = svc.Submit(Request(), {"alice", false});
  ASSERT_TRUE(a) << a.error().message();
  ASSERT_EQ(a->refusal, ExecutionService::Refusal::kNone);
  auto seen = WaitFinished(svc, a->id);
  ASSERT_EQ(seen.size(), 4u);  // queued, started, stdout, finished
  for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i].seq, i + 1);

  auto got = svc.Get(a->id);
  ASSERT_TRUE(got && *got);
  EXPECT_EQ((*got)->status, Status::kOk);
  EXPECT_EQ((*got)->stdout_text, "hi\n");
  EXPECT_EQ((*got)->labels.at("artifact_id"), "a1");

  auto rec = store_->Get(a->id);
  ASSERT_TRUE(rec && *rec);
  EXPECT_EQ((*rec)->status, "ok");
  EXPECT_EQ((*rec)->api_key, "alice");
  EXPECT_FALSE((*rec)->result.empty());
  auto events = store_->Events(a->id, 0);
  ASSERT_TRUE(events);
  EXPECT_EQ(events->size(), seen.size());

  // A late subscriber replays from the store, from any point, without duplicates.
  std::vector<uint64_t> replay;
  auto sub = svc.Subscribe(a->id, 2, [&](const Event& e) { replay.push_back(e.seq); });
  ASSERT_TRUE(sub);
  EXPECT_EQ(replay, (std::vector<uint64_t>{3, 4}));
}

TEST_F(ExecutionServiceTest, BeyondTheQueueBoundSubmitRefusesAndNothingIsRecorded) {
  Gate gate;
  ExecutionService svc([&](const auto& r, const auto& s) { return gate.Run(r, s); }, *store_,
                       {1, 1, nullptr});
  auto first = svc.Submit(Request(), {});
  ASSERT_TRUE(first);
  gate.WaitStarted(1);
  auto second = svc.Submit(Request(), {});
  ASSERT_TRUE(second);
  EXPECT_EQ(second->refusal, ExecutionService::Refusal::kNone);
  auto third = svc.Submit(Request(), {});
  ASSERT_TRUE(third);
  EXPECT_EQ(third->refusal, ExecutionService::Refusal::kQueueFull);
  EXPECT_EQ(svc.stats().queued, 1u);
  EXPECT_EQ(svc.stats().running, 1u);
  gate.Open();
  WaitFinished(svc, second->id);
  auto page = store_->List({});
  ASSERT_TRUE(page);
  EXPECT_EQ(page->items.size(), 2u);
}

TEST_F(ExecutionServiceTest, CancelEndsQueuedAndRunningExecutions) {
  Gate gate;
  ExecutionService svc([&](const auto& r, const auto& s) { return gate.Run(r, s); }, *store_,
                       {1, 4, nullptr});
  auto running = svc.Submit(Request(), {});
  auto queued = svc.Submit(Request(), {});
  ASSERT_TRUE(running && queued);
  gate.WaitStarted(1);
  EXPECT_EQ(svc.Cancel(queued->id), ExecutionService::CancelOutcome::kCancelling);
  auto q = WaitFinished(svc, queued->id);
  EXPECT_EQ(Fold(q).status, Status::kCancelled);
  EXPECT_EQ(Fold(q).reason, "cancelled before it started");

  EXPECT_EQ(svc.Cancel(running->id), ExecutionService::CancelOutcome::kCancelling);
  auto r = WaitFinished(svc, running->id);
  EXPECT_EQ(Fold(r).status, Status::kCancelled);
  {
    std::lock_guard l(gate.mu);
    EXPECT_EQ(gate.started, 1);  // the queued one never ran
  }
  EXPECT_EQ(svc.Cancel(running->id), ExecutionService::CancelOutcome::kAlreadyFinished);
  EXPECT_EQ(svc.Cancel("ex_nosuch"), ExecutionService::CancelOutcome::kNotFound);
}

TEST_F(ExecutionServiceTest, InteractiveStdinReachesTheRun) {
  ExecutionService svc(
      [](const ExecutionRequest& req, const EventSink& sink) {
        FakeRun run(req, sink);
        std::string in;
        char buf[256];
        ssize_t n;
        while ((n = ::read(req.stdin_fd, buf, sizeof buf)) > 0) in.append(buf, n);
        run.Out(in);
        return run.Finish(Status::kOk);
      },
      *store_, {1, 4, nullptr});
  ExecutionRequest req = Request();
  req.stdin_data = "first ";
  auto a = svc.Submit(req, {"", true});
  ASSERT_TRUE(a);
  ASSERT_TRUE(svc.WriteStdin(a->id, "second"));
  ASSERT_TRUE(svc.CloseStdin(a->id));
  auto seen = WaitFinished(svc, a->id);
  EXPECT_EQ(Fold(seen).stdout_text, "first second");
  EXPECT_FALSE(svc.WriteStdin(a->id, "late"));
}

TEST_F(ExecutionServiceTest, AfterACrashUnfinishedExecutionsAreInterruptedNotLost) {
  store::ExecutionRecord rec;
  rec.id = NewExecutionId();
  rec.language = "python";
  rec.status = "running";
  rec.created_at = NowRfc3339();
  Event queued;
  queued.execution_id = rec.id;
  queued.seq = 1;
  queued.kind = Event::Kind::kQueued;
  queued.payload = {{"language", "python"}, {"created_at", rec.created_at}};
  ASSERT_TRUE(store_->Begin(rec, {ToRecord(queued)}));

  ExecutionService svc([](const auto&, const auto&) { return ExecutionResult{}; }, *store_,
                       {1, 4, nullptr});
  auto n = svc.RecoverInterrupted();
  ASSERT_TRUE(n) << n.error().message();
  EXPECT_EQ(*n, 1u);
  auto got = svc.Get(rec.id);
  ASSERT_TRUE(got && *got);
  EXPECT_EQ((*got)->status, Status::kInternalError);
  EXPECT_EQ((*got)->reason, "interrupted by server restart");
  auto again = svc.RecoverInterrupted();
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, 0u);
}

TEST_F(ExecutionServiceTest, ShutdownCancelsWhatIsLeftAndRefusesNewWork) {
  Gate gate;
  ExecutionService svc([&](const auto& r, const auto& s) { return gate.Run(r, s); }, *store_,
                       {1, 4, nullptr});
  auto running = svc.Submit(Request(), {});
  auto queued = svc.Submit(Request(), {});
  ASSERT_TRUE(running && queued);
  gate.WaitStarted(1);
  svc.Shutdown(std::chrono::milliseconds(0));
  auto late = svc.Submit(Request(), {});
  ASSERT_TRUE(late);
  EXPECT_EQ(late->refusal, ExecutionService::Refusal::kShuttingDown);
  auto r = svc.Get(running->id);
  auto q = svc.Get(queued->id);
  ASSERT_TRUE(r && *r && q && *q);
  EXPECT_EQ((*r)->status, Status::kCancelled);
  EXPECT_EQ((*q)->status, Status::kCancelled);
  EXPECT_EQ((*q)->reason, "cancelled: the server shut down before it started");
  auto unfinished = store_->Unfinished();
  ASSERT_TRUE(unfinished);
  EXPECT_TRUE(unfinished->empty());
}

}  // namespace
}  // namespace polyrun::engine
