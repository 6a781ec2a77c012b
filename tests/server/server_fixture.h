#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine/execution_service.h"
#include "engine/language_info.h"
#include "engine/session_manager.h"
#include "server/server.h"
#include "store/store.h"

// What the server's tests share: temporary directories, one real Engine per test program and
// an in-process Server wired the way `polyrun serve` wires it (src/cli/serve_command.cc).
namespace polyrun::testing {

// A fresh directory under $TMPDIR, removed with everything in it by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The engine every in-process server of this program uses (languages from
// POLYRUN_LANGUAGES_DIR, a private cache directory), created on first use; throws when the
// host cannot sandbox. The versions of python and c are probed, not the others' (probing all
// seventeen toolchains would cost every test process seconds).
engine::Engine& SharedEngine();
const std::vector<engine::LanguageInfo>& SharedLanguages();

// Options for a test server: 127.0.0.1 on a free port, a short shutdown grace.
server::ServerOptions LocalOptions();

// A real Server over its own SQLite store, ExecutionService and SessionManager, running
// through SharedEngine().
class TestServer {
 public:
  // Throws when the store, the service or the server cannot start.
  static std::unique_ptr<TestServer> Start(server::ServerOptions options = LocalOptions(),
                                           engine::ExecutionService::Options service = {},
                                           engine::SessionManager::Options sessions = {});
  // Stop(), then the service, then the sessions, then the store.
  ~TestServer();
  TestServer(const TestServer&) = delete;
  TestServer& operator=(const TestServer&) = delete;

  uint16_t port() const { return server_->port(); }
  server::Server& server() { return *server_; }
  engine::ExecutionService& service() { return *service_; }
  store::Store& store() { return *store_; }
  engine::SessionManager& sessions() { return *sessions_; }
  // The server's graceful stop (Server::Stop).
  void Stop() { server_->Stop(); }

  // Blocks until execution `id` has finished (told by a subscription, bounded by `timeout`)
  // and returns its result. Throws on an unknown id or the timeout.
  engine::ExecutionResult WaitFinished(
      const std::string& id, std::chrono::milliseconds timeout = std::chrono::milliseconds(60000));

 private:
  TestServer() = default;
  TempDir dir_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<engine::SessionManager> sessions_;
  std::unique_ptr<engine::ExecutionService> service_;
  std::unique_ptr<server::Server> server_;
};

}  // namespace polyrun::testing
