#pragma once

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "engine/check.h"
#include "engine/execution_service.h"
#include "engine/language_info.h"
#include "engine/request_json.h"
#include "engine/session_manager.h"
#include "engine/warm_pool.h"
#include "engine/zygotes.h"
#include "server/api_keys.h"
#include "server/http.h"
#include "server/metrics.h"
#include "store/store.h"

namespace polyrun::server {

class Api;  // the handlers (api.h)

// Everything the server needs from below, injected so tests can run it in-process with a
// fake runner or the real engine.
struct ServerDeps {
  engine::ExecutionService& service;
  store::Store& store;
  // Every language; the vector must outlive the server (it is read on every request).
  std::function<const std::vector<engine::LanguageInfo>&()> languages;
  // The analyzer (POST /v1/check); runs on a worker thread, may take seconds.
  std::function<engine::CheckReport(const engine::CheckRequest&)> check;
  // The language's entry file name ("main.py"), for requests that send code without names.
  std::function<std::string(const std::string& language)> entry_name;
  // The live sessions (/v1/sessions, and executions with a session_id); null: the server has
  // no sessions and those routes answer 404. The ExecutionService's runner must hand requests
  // with a session_id to its Execute. Server::Stop shuts it down after the service.
  engine::SessionManager* sessions = nullptr;
  // The engine's warm pools' figures (GET /metrics); null: none.
  std::function<std::map<std::string, engine::WarmPool::Stats>()> warm_pools;
  // The engine's zygotes' figures (GET /metrics); null: none.
  std::function<std::map<std::string, engine::Zygotes::Stats>()> zygotes;
  // Run cgroups the sandbox could not remove after their run (GET /metrics); null: none.
  std::function<uint64_t()> teardown_failures;
  // The engine's prebuilt sandboxes' figures (GET /metrics); null: none.
  std::function<std::map<std::string, engine::WarmPool::Stats>()> prebuilt;
};

struct ServerOptions {
  std::string listen = "127.0.0.1:8080";  // host:port; port 0 picks a free one
  size_t io_threads = 2;
  HttpLimits http;
  engine::RequestCaps caps;
  std::chrono::milliseconds shutdown_grace{10000};
  ApiKeys keys;                  // empty: no authentication
  bool allow_anonymous = false;  // serve a non-loopback address without API keys
  // Retention, applied by a background pruner: finished executions older than retention_age
  // or beyond the newest retention_count are deleted; 0 = no bound.
  std::chrono::milliseconds retention_age{0};
  uint64_t retention_count = 0;
  std::chrono::milliseconds prune_interval{60000};
};

// polyrun's HTTP/JSON + WebSocket server: the native API under /v1, the Piston-compatible API
// under /api/v2, /healthz and /metrics (docs/api.md).
class Server {
 public:
  Server(ServerOptions options, ServerDeps deps);
  ~Server();  // Stop()
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and starts serving on background threads. Fails naming the address (bind, listen) or
  // the option that forbids it (a public address without API keys).
  Result<void> Start();
  uint16_t port() const;
  // Graceful: stops accepting connections and runs, lets runs finish for shutdown_grace,
  // cancels the rest (status `cancelled`), closes every session, then stops the I/O threads.
  // Idempotent.
  void Stop();

  Metrics& metrics() { return metrics_; }

 private:
  void Prune();
  ServerOptions options_;
  ServerDeps deps_;
  Metrics metrics_;
  boost::asio::io_context ioc_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_;
  std::shared_ptr<HttpListener> listener_;
  std::vector<std::thread> threads_;
  std::unique_ptr<Api> api_;
  std::thread pruner_;
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stopped_ = false;
};

// Parses "host:port" ("127.0.0.1:8080", "[::1]:8080", ":8080" = all addresses).
Result<boost::asio::ip::tcp::endpoint> ParseListen(const std::string& text);

}  // namespace polyrun::server
