// Load on loopback: many keep-alive clients against a server whose queue is small, so that
// admission control is really exercised (label: root, integration; runs alone).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "http_client.h"
#include "server_fixture.h"

namespace polyrun::testing {
namespace {

using nlohmann::json;

TEST(LoadTest, ManyClientsAgainstABoundedQueue) {
  constexpr int kClients = 16;
  // At least this many requests, and on until this many runs were accepted (the queue has
  // drained and refilled many times), but never more than kMaxRequests.
  constexpr int kMinRequests = 300;
  constexpr int kMinAccepted = 60;
  constexpr int kMaxRequests = 200000;
  engine::ExecutionService::Options service;
  service.max_running = 2;
  service.max_queued = 8;
  auto srv = TestServer::Start(LocalOptions(), service);
  const json body = {{"language", "python"}, {"code", "print(1)"}};

  std::atomic<int> next{0};
  std::atomic<int> ok{0};
  std::mutex mu;
  std::map<std::string, json> accepted;  // id -> the answer
  int rejected = 0, sent = 0;
  std::vector<std::string> unexpected;
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> clients;
  for (int t = 0; t < kClients; ++t) {
    clients.emplace_back([&] {
      try {
        HttpClient c(srv->port());
        for (;;) {
          const int n = next.fetch_add(1);
          if (n >= kMaxRequests || (n >= kMinRequests && ok.load() >= kMinAccepted)) break;
          HttpReply r = c.Post("/v1/executions?wait=true", body);
          std::lock_guard lock(mu);
          ++sent;
          if (r.status == 200) {
            json j = r.Json();
            if (j["status"] != "ok" || j["stdout"] != "1\n") {
              unexpected.push_back("200 without the run's output: " + r.body);
            } else if (!accepted.emplace(j["id"].get<std::string>(), j).second) {
              unexpected.push_back("an id answered twice: " + r.body);
            } else {
              ++ok;
            }
          } else if ((r.status == 429 || r.status == 503) && !r.Header("retry-after").empty()) {
            const std::string code = r.Json()["error"]["code"];
            if (code != "queue_full" && code != "shutting_down") {
              unexpected.push_back("refusal with code " + code);
            }
            ++rejected;
          } else {
            unexpected.push_back("HTTP " + std::to_string(r.status) + ": " + r.body);
          }
        }
      } catch (const std::exception& e) {
        std::lock_guard lock(mu);
        unexpected.push_back(std::string("client failed: ") + e.what());
      }
    });
  }
  for (auto& t : clients) t.join();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("load: %d requests from %d clients in %.2f s: %zu accepted (ran ok), %d refused\n",
              sent, kClients, seconds, accepted.size(), rejected);

  for (const auto& u : unexpected) ADD_FAILURE() << u;
  EXPECT_GE(sent, kMinRequests);
  EXPECT_LT(sent, kMaxRequests) << "fewer than " << kMinAccepted << " runs were accepted";
  EXPECT_EQ(static_cast<int>(accepted.size()) + rejected, sent);
  EXPECT_GT(accepted.size(), 0u);
  EXPECT_GT(rejected, 0) << "the queue was never full: the load did not reach admission control";

  // Every accepted run is in the store with exactly the result that was answered; nothing
  // else is, and nothing is left unfinished.
  for (const auto& [id, answer] : accepted) {
    auto rec = srv->store().Get(id);
    ASSERT_TRUE(rec && *rec) << id;
    EXPECT_EQ((*rec)->status, "ok") << id;
    EXPECT_FALSE((*rec)->finished_at.empty()) << id;
    EXPECT_EQ(json::parse((*rec)->result), answer) << id;
  }
  std::set<std::string> stored;
  store::HistoryQuery q;
  q.limit = 1000;
  for (;;) {
    auto page = srv->store().List(q);
    ASSERT_TRUE(page) << page.error().message();
    for (const auto& r : page->items) {
      EXPECT_FALSE(r.finished_at.empty()) << r.id;
      stored.insert(r.id);
    }
    if (page->next_before.empty()) break;
    q.before = page->next_before;
  }
  EXPECT_EQ(stored.size(), accepted.size());
  auto unfinished = srv->store().Unfinished();
  ASSERT_TRUE(unfinished);
  EXPECT_TRUE(unfinished->empty());
}

}  // namespace
}  // namespace polyrun::testing
