#include "cli/serve_command.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <thread>

#include "cli/exit_codes.h"
#include "engine/engine.h"
#include "engine/execution_service.h"
#include "engine/session_manager.h"
#include "server/server.h"
#include "server/server_config.h"
#include "store/store.h"

namespace polyrun::cli {

namespace {

std::string DefaultDataDir() {
  const char* xdg = std::getenv("XDG_DATA_HOME");
  if (xdg && *xdg) return std::string(xdg) + "/polyrun";
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : ".") + "/.local/share/polyrun";
}

// mkdir -p with mode 0700 for what it creates.
Result<void> MakeDirs(const std::string& path) {
  for (size_t i = 1; i <= path.size(); ++i) {
    if (i == path.size() || path[i] == '/') {
      std::string part = path.substr(0, i);
      if (::mkdir(part.c_str(), 0700) != 0 && errno != EEXIST) {
        return SysFail("mkdir", "data directory " + part);
      }
    }
  }
  return {};
}

int Fatal(const std::string& what) {
  std::cerr << "polyrun serve: " << what << "\n";
  return kExitUsage;
}

}  // namespace

int ServeCommand(const ServeOptions& options, const SettingsFlags& flags) {
  // Signals are taken by sigwait below, never by a handler on a random thread: blocked before
  // any thread (the service's workers, the I/O threads) exists, so all of them inherit it.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  std::string text, origin;
  auto config = LoadSettings(flags, &text, &origin);
  if (!config) return Fatal(config.error().message());
  server::ServeSettings serve;
  if (!text.empty()) {
    auto parsed = server::ParseServeSettings(text, origin, serve);
    if (!parsed) return Fatal(parsed.error().message());
    serve = std::move(*parsed);
  }
  for (const auto& [name, value] : options.settings) {
    if (auto ok = server::ApplyServerSetting(serve, name, value); !ok) {
      return Fatal(ok.error().message());
    }
  }
  if (auto ok = server::CheckSessionSettings(serve); !ok) return Fatal(ok.error().message());
  if (serve.data_dir.empty()) serve.data_dir = DefaultDataDir();
  std::string location = serve.store;
  if (location.empty()) {
    if (auto made = MakeDirs(serve.data_dir); !made) return Fatal(made.error().message());
    location = serve.data_dir + "/polyrun.db";
  }
  auto store = store::OpenStore(location);
  if (!store) return Fatal(store.error().message());

  auto engine = engine::Engine::Create(*config);
  if (!engine) return Fatal(engine.error().message());
  engine::Engine& eng = **engine;
  eng.registry().ProbeVersions(config->cache_dir);
  const std::vector<engine::LanguageInfo> languages = engine::LanguageInfos(eng.registry(), "");

  engine::ExecutionService::Options so;
  so.max_running =
      serve.max_running > 0 ? serve.max_running : std::max(1u, std::thread::hardware_concurrency());
  so.max_queued = serve.max_queued;
  // Declared before the service, so destroyed after it: the service's runner uses it.
  engine::SessionManager sessions(eng, store->get(), serve.sessions);
  engine::ExecutionService service(
      [&eng, &sessions](const engine::ExecutionRequest& r, const engine::EventSink& sink) {
        return r.session_id.empty() ? eng.Run(r, sink) : sessions.Execute(r, sink);
      },
      **store, so);
  auto recovered = service.RecoverInterrupted();
  if (!recovered) return Fatal("store: " + recovered.error().message());
  if (*recovered > 0) {
    std::cerr << "polyrun serve: " << *recovered
              << " execution(s) were in flight when the server last stopped; they are recorded "
                 "as internal_error (interrupted by server restart)\n";
  }

  server::ServerDeps deps{
      service,
      **store,
      [&languages]() -> const std::vector<engine::LanguageInfo>& { return languages; },
      [&eng](const engine::CheckRequest& r) { return eng.Check(r); },
      [&eng](const std::string& language) -> std::string {
        const auto* e = eng.registry().Find(language);
        return e && e->language ? e->language->entry : "main";
      },
      &sessions,
      [&eng] { return eng.WarmPoolStats(); },
      [&eng] { return eng.ZygoteStats(); },
      [&eng] { return eng.sandbox().TeardownFailures(); },
      [&eng] { return eng.PrebuiltStats(); }};
  // Filled in the background while the server starts: the first runs may still be cold.
  eng.StartWarmPools();

  server::Server srv(serve.server, deps);
  if (auto started = srv.Start(); !started) return Fatal(started.error().message());
  std::cout << "polyrun serve: listening on http://"
            << serve.server.listen.substr(0, serve.server.listen.rfind(':')) << ":" << srv.port()
            << "  (store: " << (*store)->backend() << " " << location << "; " << so.max_running
            << " runs at once, " << so.max_queued << " queued; Ctrl-C stops)\n"
            << std::flush;
  int sig = 0;
  sigwait(&stop_signals, &sig);
  std::cout << "polyrun serve: " << (sig == SIGINT ? "SIGINT" : "SIGTERM")
            << ": finishing running executions (up to "
            << serve.server.shutdown_grace.count() / 1000.0 << " s), then stopping\n"
            << std::flush;
  srv.Stop();  // the service, then the sessions
  sessions.Shutdown();
  std::cout << "polyrun serve: stopped\n" << std::flush;
  return 0;
}

}  // namespace polyrun::cli
