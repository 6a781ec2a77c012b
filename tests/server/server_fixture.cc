#include "server_fixture.h"

#include <stdlib.h>

#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <stdexcept>

namespace polyrun::testing {

TempDir::TempDir() {
  std::string tmpl =
      (std::filesystem::temp_directory_path() / "polyrun-server-test-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

namespace {

struct Shared {
  TempDir cache;
  std::unique_ptr<engine::Engine> engine;
  std::vector<engine::LanguageInfo> languages;
};

Shared& TheShared() {
  // Destroyed at exit, after every TestServer: the cache directory goes with it.
  static std::unique_ptr<Shared> shared = [] {
    auto s = std::make_unique<Shared>();
    engine::EngineConfig config;
    config.languages_dir = POLYRUN_LANGUAGES_DIR;
    config.cache_dir = s->cache.path();
    auto created = engine::Engine::Create(config);
    if (!created) throw std::runtime_error("Engine::Create: " + created.error().message());
    s->engine = std::move(*created);
    for (const char* id : {"python", "c"}) {
      if (s->engine->VersionOf(id).empty()) {
        throw std::runtime_error(std::string("no version for ") + id + " (is it installed?)");
      }
    }
    s->languages = engine::LanguageInfos(s->engine->registry(), "");
    return s;
  }();
  return *shared;
}

}  // namespace

engine::Engine& SharedEngine() {
  return *TheShared().engine;
}
const std::vector<engine::LanguageInfo>& SharedLanguages() {
  return TheShared().languages;
}

server::ServerOptions LocalOptions() {
  server::ServerOptions o;
  o.listen = "127.0.0.1:0";
  o.shutdown_grace = std::chrono::milliseconds(2000);
  return o;
}

std::unique_ptr<TestServer> TestServer::Start(server::ServerOptions options,
                                              engine::ExecutionService::Options service,
                                              engine::SessionManager::Options sessions) {
  std::unique_ptr<TestServer> t(new TestServer);
  auto store = store::OpenStore(t->dir_.path() + "/polyrun.db");
  if (!store) throw std::runtime_error("OpenStore: " + store.error().message());
  t->store_ = std::move(*store);
  engine::Engine& eng = SharedEngine();
  t->sessions_ = std::make_unique<engine::SessionManager>(eng, t->store_.get(), sessions);
  t->service_ = std::make_unique<engine::ExecutionService>(
      [&eng, s = t->sessions_.get()](const engine::ExecutionRequest& r,
                                     const engine::EventSink& sink) {
        return r.session_id.empty() ? eng.Run(r, sink) : s->Execute(r, sink);
      },
      *t->store_, std::move(service));
  if (auto recovered = t->service_->RecoverInterrupted(); !recovered) {
    throw std::runtime_error("RecoverInterrupted: " + recovered.error().message());
  }
  server::ServerDeps deps{
      *t->service_,
      *t->store_,
      []() -> const std::vector<engine::LanguageInfo>& { return SharedLanguages(); },
      [&eng](const engine::CheckRequest& r) { return eng.Check(r); },
      [&eng](const std::string& language) -> std::string {
        const auto* e = eng.registry().Find(language);
        return e && e->language ? e->language->entry : "main";
      },
      t->sessions_.get(),
      [&eng] { return eng.WarmPoolStats(); },
      [&eng] { return eng.ZygoteStats(); },
      [&eng] { return eng.sandbox().TeardownFailures(); },
      [&eng] { return eng.PrebuiltStats(); }};
  t->server_ = std::make_unique<server::Server>(std::move(options), deps);
  if (auto started = t->server_->Start(); !started) {
    throw std::runtime_error("Server::Start: " + started.error().message());
  }
  return t;
}

TestServer::~TestServer() {
  if (server_) server_->Stop();
  server_.reset();
  service_.reset();
  sessions_.reset();
  store_.reset();
}

engine::ExecutionResult TestServer::WaitFinished(const std::string& id,
                                                 std::chrono::milliseconds timeout) {
  struct Done {
    std::mutex mu;
    std::condition_variable cv;
    bool finished = false;
  };
  auto done = std::make_shared<Done>();
  auto sub = service_->Subscribe(id, 0, [done](const engine::Event& e) {
    if (e.kind != engine::Event::Kind::kFinished) return;
    std::lock_guard lock(done->mu);
    done->finished = true;
    done->cv.notify_all();
  });
  if (!sub) throw std::runtime_error("Subscribe " + id + ": " + sub.error().message());
  {
    std::unique_lock lock(done->mu);
    if (!done->cv.wait_for(lock, timeout, [&] { return done->finished; })) {
      throw std::runtime_error("execution " + id + " did not finish within " +
                               std::to_string(timeout.count()) + " ms");
    }
  }
  auto result = service_->Get(id);
  if (!result) throw std::runtime_error("Get " + id + ": " + result.error().message());
  const std::optional<engine::ExecutionResult>& found = *result;
  if (!found) throw std::runtime_error("Get " + id + ": gone after it finished");
  return *found;
}

}  // namespace polyrun::testing
