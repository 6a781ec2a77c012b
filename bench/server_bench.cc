// What the server adds to a run, in one process and one run. The same trivial program (python,
// `print(1)`) is run N times each way:
//   (a) library  Engine::Run, nothing stored;
//   (d) service  ExecutionService::Submit, then a subscription until `finished`: the queue, a
//                worker thread and every event appended to the SQLite store, without HTTP;
//   (b) HTTP     POST /v1/executions?wait=true to an in-process Server on 127.0.0.1, over one
//                keep-alive connection (Boost.Beast), wired like `polyrun serve`.
// The three are interleaved in small blocks (their order rotating) after a warm-up, so machine
// noise lands on all of them alike. (d) − (a) is the store and queue; (b) − (d) is the HTTP
// layer (parse, validate, serialise, loopback). Sessions the same way, `1+1` in one live Python
// session:
//   (s) library  Session::Execute;
//   (w) WS       {"type":"run","session_id",…} on one /v1/ws connection until its `result`
//                message: the service's queue and store, every event sent, the result.
// Then (c): requests/s of GET /v1/languages beside GET /healthz (the cheapest route) under
// `wrk -t2 -c32 -d5s`.
//
// Needs root (the sandbox) and wrk for (c). Prints one table and writes the figures as JSON
// (default bench/results/server.json).
//
// With --warm-pools the engine keeps warm pools (docs/performance.md) and every one-shot run
// starts once the pool is full (its refill off the clock): (a), (d) and (b) are then warm runs, and
// the figures go to bench/results/server_warm.json. With --zygote every one-shot run is forked
// from python's zygote instead (bench/results/server_zygote.json); with --prebuilt, each starts
// in a sandbox built ahead of it, once the language's are all ready
// (bench/results/server_prebuilt.json).
//
//   server_bench [--runs N] [--block B] [--warm-pools | --zygote | --prebuilt] [--out FILE]
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "engine/engine.h"
#include "engine/execution_service.h"
#include "engine/language_info.h"
#include "engine/result_json.h"
#include "engine/session_manager.h"
#include "server/server.h"
#include "stats.h"
#include "store/store.h"

namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;
using nlohmann::json;
using polyrun::bench::Ms;
using polyrun::bench::Percentile;
using polyrun::bench::SummaryJson;
using polyrun::engine::Engine;
using polyrun::engine::ExecutionRequest;
using polyrun::engine::ExecutionResult;
using polyrun::engine::ExecutionService;

constexpr const char* kLanguage = "python";
constexpr const char* kCode = "print(1)";
constexpr const char* kSessionCode = "1+1";
constexpr const char* kWrk = "wrk -t2 -c32 -d5s";

struct Args {
  size_t runs = 200;
  size_t block = 10;
  std::string out;
  std::string start = "cold";  // how the one-shot runs start: cold, warm or zygote
};

// Thrown up to main, which reports it and removes the work directory.
[[noreturn]] void Die(const std::string& what) {
  throw std::runtime_error(what);
}

Args ParseArgs(int argc, char** argv) {
  Args a;
  auto count = [&](int& i) -> size_t {
    if (i + 1 >= argc) Die(std::string(argv[i]) + ": expected a number");
    char* end = nullptr;
    const unsigned long n = std::strtoul(argv[++i], &end, 10);
    if (*end != '\0' || n == 0) Die(std::string(argv[i - 1]) + ": expected a positive number");
    return n;
  };
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--runs") {
      a.runs = count(i);
    } else if (arg == "--block") {
      a.block = count(i);
    } else if (arg == "--out" && i + 1 < argc) {
      a.out = argv[++i];
    } else if (arg == "--warm-pools") {
      a.start = "warm";
    } else if (arg == "--zygote") {
      a.start = "zygote";
    } else if (arg == "--prebuilt") {
      a.start = "prebuilt";
    } else {
      Die("usage: server_bench [--runs N] [--block B] [--warm-pools | --zygote | --prebuilt] "
          "[--out FILE]");
    }
  }
  if (a.out.empty()) {
    a.out = std::string(POLYRUN_BENCH_RESULTS) +
            (a.start == "cold" ? "/server.json" : "/server_" + a.start + ".json");
  }
  return a;
}

struct Summary {
  double median, p90, p99;
};
Summary Summarise(const std::vector<double>& v) {
  return {Percentile(v, 50), Percentile(v, 90), Percentile(v, 99)};
}

// Every timed run must have really run the program; a figure for a failing path means nothing.
void Expect(bool ok, const std::string& path, const std::string& detail) {
  if (!ok) Die(path + ": unexpected result: " + detail);
}

ExecutionRequest Request() {
  ExecutionRequest r;
  r.language = kLanguage;
  r.code = kCode;
  return r;
}

// One keep-alive HTTP/1.1 connection to the server, used for every (b) request.
class Client {
 public:
  explicit Client(uint16_t port) : stream_(ioc_) {
    stream_.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
    stream_.socket().set_option(tcp::no_delay(true));
  }

  // POSTs `body` and returns the response; throws on a transport failure.
  http::response<http::string_body> Post(const std::string& target, const std::string& body) {
    http::request<http::string_body> req{http::verb::post, target, 11};
    req.set(http::field::host, "127.0.0.1");
    req.set(http::field::content_type, "application/json");
    req.keep_alive(true);
    req.body() = body;
    req.prepare_payload();
    http::write(stream_, req);
    http::response<http::string_body> res;
    http::read(stream_, buffer_, res);
    return res;
  }

 private:
  net::io_context ioc_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
};

// One /v1/ws connection; Run sends a run message and reads until its `result` message.
class WsClient {
 public:
  explicit WsClient(uint16_t port) : ws_(ioc_) {
    ws_.next_layer().connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
    ws_.next_layer().set_option(tcp::no_delay(true));
    ws_.handshake("127.0.0.1", "/v1/ws");
    ws_.text(true);
  }

  // The `result` message's result; throws on a transport failure, dies on an `error` message.
  json Run(const json& run) {
    ws_.write(net::buffer(run.dump()));
    for (;;) {
      beast::flat_buffer buffer;
      ws_.read(buffer);
      json m = json::parse(beast::buffers_to_string(buffer.data()));
      const std::string type = m.value("type", "");
      if (type == "result") return m["result"];
      if (type == "error") Die("WS: " + m.dump());
    }
  }

 private:
  net::io_context ioc_;
  websocket::stream<tcp::socket> ws_;
};

// Submits one request and waits for its `finished` event; returns the folded result.
ExecutionResult RunThroughService(ExecutionService& service) {
  struct Wait {
    std::mutex mu;
    std::condition_variable cv;
    ExecutionResult folded;
    bool done = false;
  } w;
  auto admitted = service.Submit(Request(), {});
  if (!admitted || admitted->refusal != ExecutionService::Refusal::kNone) {
    Die("service: Submit refused: " +
        (admitted ? std::string("queue") : admitted.error().message()));
  }
  // The callback runs under the service's lock: it only folds and signals.
  auto sub = service.Subscribe(admitted->id, 0, [&w](const polyrun::engine::Event& e) {
    std::lock_guard lock(w.mu);
    polyrun::engine::Apply(w.folded, e);
    if (e.kind == polyrun::engine::Event::Kind::kFinished) {
      w.done = true;
      w.cv.notify_all();
    }
  });
  if (!sub) Die("service: Subscribe: " + sub.error().message());
  std::unique_lock lock(w.mu);
  if (!w.cv.wait_for(lock, std::chrono::seconds(60), [&] { return w.done; })) {
    Die("service: no finished event within 60 s");
  }
  return w.folded;
}

// Runs `command` (wrk) and returns its Requests/sec; nullopt when wrk is missing or failed.
std::optional<double> WrkRequestsPerSecond(const std::string& url) {
  const std::string command = std::string(kWrk) + " " + url + " 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return std::nullopt;
  std::string out;
  char buf[4096];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  const int status = ::pclose(pipe);
  if (status != 0) {
    std::cerr << "server_bench: `" << command << "` failed:\n" << out;
    return std::nullopt;
  }
  // Any non-2xx answer would make the rate a rate of errors.
  if (out.find("Non-2xx or 3xx responses") != std::string::npos) {
    std::cerr << "server_bench: " << url << " answered errors under load:\n" << out;
    return std::nullopt;
  }
  const size_t at = out.find("Requests/sec:");
  if (at == std::string::npos) return std::nullopt;
  return std::strtod(out.c_str() + at + std::strlen("Requests/sec:"), nullptr);
}

// Waits until every other thread of this process has run far enough to block (state S).
// A sandbox is cloned from whichever thread runs, and its init calls glibc's setgroups and
// setresuid, which wait for every thread the parent had still starting (setxid_futex == -1 in
// glibc's pthread_create); the clone has no such thread, so the run hangs until its wall time
// limit. The server's and the service's threads start just before the first run here.
void WaitForThreadsStarted() {
  const std::string self = std::to_string(::gettid());
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  for (;;) {
    bool starting = false;
    for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
      if (task.path().filename() == self) continue;
      std::ifstream stat(task.path() / "stat");
      std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
      const size_t paren = text.rfind(')');
      // "pid (comm) STATE ...": a thread that has never run is runnable (R).
      if (paren != std::string::npos && paren + 2 < text.size() && text[paren + 2] == 'R') {
        starting = true;
      }
    }
    if (!starting) return;
    if (Clock::now() > deadline) Die("the server's threads did not start within 30 s");
    std::this_thread::yield();
  }
}

bool HaveWrk() {
  return std::system("command -v wrk >/dev/null 2>&1") == 0;
}

json OrNull(const std::optional<double>& v) {
  return v ? json(*v) : json(nullptr);
}

int Bench(const Args& args, const std::string& work) {
  polyrun::engine::EngineConfig cfg;
  cfg.languages_dir = POLYRUN_LANGUAGES_DIR;
  cfg.cache_dir = work + "/cache";
  cfg.zygotes = args.start == "zygote";
  if (args.start == "zygote" || args.start == "prebuilt") cfg.warm_pool_size = 0;
  if (args.start != "prebuilt") cfg.prebuilt_sandboxes = 0;
  std::filesystem::create_directories(cfg.cache_dir);
  auto created = Engine::Create(cfg);
  if (!created) Die(created.error().message());
  Engine& engine = **created;
  engine.registry().ProbeVersions(cfg.cache_dir);
  if (args.start != "cold") engine.StartWarmPools();
  const std::string start_kind = args.start;
  // Warm: each run starts once the pool is full, so that no refill (an interpreter's start,
  // 25-30 ms of CPU) runs beside it: the refill is off the clock. Waiting for one sandbox alone
  // left the refill of the pool's second one competing with the run for the two cores.
  // Zygote: once the server runs (it only waits at the start).
  auto pool_full = [&] {
    const auto stats = args.start == "warm" ? engine.WarmPoolStats()[kLanguage]
                                            : engine.PrebuiltStats()[kLanguage];
    return stats.ready > 0 && stats.ready >= stats.target;
  };
  auto await_ready = [&] {
    if (args.start == "cold") return;
    const auto deadline = Clock::now() + std::chrono::seconds(60);
    while (args.start == "zygote" ? !engine.ZygoteStats()[kLanguage].ready : !pool_full()) {
      if (Clock::now() > deadline) Die("no " + args.start + " start within 60 s");
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  };
  const std::vector<polyrun::engine::LanguageInfo> languages =
      polyrun::engine::LanguageInfos(engine.registry(), "");

  auto store = polyrun::store::OpenStore(work + "/polyrun.db");
  if (!store) Die(store.error().message());
  ExecutionService::Options so;
  so.max_running = std::max(1u, std::thread::hardware_concurrency());
  polyrun::engine::SessionManager sessions(engine, store->get(), {});
  ExecutionService service(
      [&engine, &sessions](const ExecutionRequest& r, const polyrun::engine::EventSink& sink) {
        return r.session_id.empty() ? engine.Run(r, sink) : sessions.Execute(r, sink);
      },
      **store, so);

  polyrun::server::ServerOptions options;
  options.listen = "127.0.0.1:0";
  options.shutdown_grace = std::chrono::milliseconds(2000);
  polyrun::server::ServerDeps deps{
      service,
      **store,
      [&languages]() -> const std::vector<polyrun::engine::LanguageInfo>& { return languages; },
      [&engine](const polyrun::engine::CheckRequest& r) { return engine.Check(r); },
      [&engine](const std::string& language) -> std::string {
        const auto* e = engine.registry().Find(language);
        return e && e->language ? e->language->entry : "main";
      },
      &sessions,
      [&engine] { return engine.WarmPoolStats(); },
      [&engine] { return engine.ZygoteStats(); },
      [&engine] { return engine.sandbox().TeardownFailures(); },
      [&engine] { return engine.PrebuiltStats(); }};
  polyrun::server::Server server(options, deps);
  if (auto started = server.Start(); !started) Die(started.error().message());
  const uint16_t port = server.port();
  Client client(port);
  WsClient ws(port);
  WaitForThreadsStarted();
  polyrun::engine::SessionRequest session_request;
  session_request.language = kLanguage;
  auto made = sessions.Create(session_request);
  if (!made) Die("session: " + made.error().message());
  const std::shared_ptr<polyrun::engine::Session> session = *made;
  ExecutionRequest session_exec;
  session_exec.code = kSessionCode;
  const json ws_run = {{"type", "run"},
                       {"session_id", session->id()},
                       {"code", kSessionCode},
                       {"interactive", false}};

  const std::string body = json{{"language", kLanguage}, {"code", kCode}}.dump();
  std::vector<double> library, service_ms, http_ms, session_ms, ws_ms;
  const std::vector<std::function<void(bool)>> paths = {
      [&](bool timed) {
        await_ready();
        const auto t0 = Clock::now();
        ExecutionResult r = engine.Run(Request());
        const double ms = Ms(Clock::now() - t0);
        Expect(r.status == polyrun::engine::Status::kOk && r.stdout_text == "1\n" &&
                   r.usage.start == start_kind,
               "library",
               polyrun::engine::ToJson(r).dump(-1, ' ', false, json::error_handler_t::replace));
        if (timed) library.push_back(ms);
      },
      [&](bool timed) {
        await_ready();
        const auto t0 = Clock::now();
        ExecutionResult r = RunThroughService(service);
        const double ms = Ms(Clock::now() - t0);
        Expect(r.status == polyrun::engine::Status::kOk && r.stdout_text == "1\n" &&
                   r.usage.start == start_kind,
               "service",
               polyrun::engine::ToJson(r).dump(-1, ' ', false, json::error_handler_t::replace));
        if (timed) service_ms.push_back(ms);
      },
      [&](bool timed) {
        await_ready();
        const auto t0 = Clock::now();
        auto res = client.Post("/v1/executions?wait=true", body);
        const double ms = Ms(Clock::now() - t0);
        json j = json::parse(res.body(), nullptr, false);
        Expect(res.result_int() == 200 && !j.is_discarded() && j.value("status", "") == "ok" &&
                   j.value("stdout", "") == "1\n" && j["usage"].value("start", "") == start_kind,
               "HTTP", std::to_string(res.result_int()) + " " + res.body());
        if (timed) http_ms.push_back(ms);
      },
      [&](bool timed) {
        const auto t0 = Clock::now();
        ExecutionResult r = session->Execute(session_exec, nullptr);
        const double ms = Ms(Clock::now() - t0);
        Expect(r.status == polyrun::engine::Status::kOk && r.result.value("text/plain", "") == "2",
               "session",
               polyrun::engine::ToJson(r).dump(-1, ' ', false, json::error_handler_t::replace));
        if (timed) session_ms.push_back(ms);
      },
      [&](bool timed) {
        const auto t0 = Clock::now();
        json r = ws.Run(ws_run);
        const double ms = Ms(Clock::now() - t0);
        Expect(r.value("status", "") == "ok" && r["result"].value("text/plain", "") == "2",
               "WS session", r.dump());
        if (timed) ws_ms.push_back(ms);
      },
  };

  std::cout << "server_bench: " << kLanguage << " `" << kCode << "` (" << start_kind << " runs), "
            << args.runs << " runs per path in blocks of " << args.block
            << ", server on 127.0.0.1:" << port << "\n"
            << std::flush;
  for (int i = 0; i < 10; ++i) {
    for (const auto& p : paths) p(false);
  }
  for (size_t done = 0, b = 0; done < args.runs; ++b) {
    const size_t n = std::min(args.block, args.runs - done);
    for (size_t k = 0; k < paths.size(); ++k) {
      const auto& p = paths[(b + k) % paths.size()];  // each path leads in turn
      for (size_t i = 0; i < n; ++i) p(true);
    }
    done += n;
  }

  std::optional<double> healthz, langs;
  const bool have_wrk = HaveWrk();
  if (have_wrk) {
    const std::string base = "http://127.0.0.1:" + std::to_string(port);
    std::cout << "server_bench: " << kWrk << " on /healthz, then /v1/languages\n" << std::flush;
    healthz = WrkRequestsPerSecond(base + "/healthz");
    langs = WrkRequestsPerSecond(base + "/v1/languages");
  }
  server.Stop();
  sessions.Shutdown();

  const Summary a = Summarise(library), d = Summarise(service_ms), h = Summarise(http_ms);
  const Summary sl = Summarise(session_ms), sw = Summarise(ws_ms);
  const double overhead = h.median - a.median;
  const double ratio = h.median / a.median;
  std::optional<double> rps_ratio;
  if (healthz && langs && *healthz > 0) rps_ratio = *langs / *healthz;

  std::printf("\n%-44s %9s %9s %9s\n", "path (ms per run)", "median", "p90", "p99");
  auto row = [](const char* name, const Summary& s) {
    std::printf("%-44s %9.2f %9.2f %9.2f\n", name, s.median, s.p90, s.p99);
  };
  row("(a) library    Engine::Run", a);
  row("(d) service    Submit + finished (SQLite)", d);
  row("(b) HTTP       POST /v1/executions?wait=true", h);
  std::printf("\nHTTP overhead  median(b) - median(a)  %8.2f ms   ratio median(b)/median(a) %.3f\n",
              overhead, ratio);
  std::printf("  store+queue  median(d) - median(a)  %8.2f ms\n", d.median - a.median);
  std::printf("  HTTP layer   median(b) - median(d)  %8.2f ms\n", h.median - d.median);
  std::printf("\n%-44s %9s %9s %9s\n", "session `1+1` (ms per execution)", "median", "p90", "p99");
  auto row3 = [](const char* name, const Summary& s) {
    std::printf("%-44s %9.3f %9.3f %9.3f\n", name, s.median, s.p90, s.p99);
  };
  row3("(s) library    Session::Execute", sl);
  row3("(w) WS         run with session_id", sw);
  std::printf("WS overhead    median(w) - median(s)  %8.3f ms   ratio %.2f\n",
              sw.median - sl.median, sw.median / sl.median);
  std::printf("\n(c) %-40s %12s\n", kWrk, "requests/s");
  auto rps = [](const char* name, const std::optional<double>& v) {
    if (v) {
      std::printf("    %-40s %12.0f\n", name, *v);
    } else {
      std::printf("    %-40s %12s\n", name, "n/a");
    }
  };
  rps("GET /healthz", healthz);
  rps("GET /v1/languages", langs);
  if (rps_ratio) std::printf("    %-40s %12.3f\n", "ratio languages/healthz", *rps_ratio);
  if (!have_wrk) std::printf("    (wrk not found: apt-get install wrk, or make setup)\n");

  const json out = {
      {"language", kLanguage},
      {"code", kCode},
      {"start", start_kind},
      {"runs", args.runs},
      {"block", args.block},
      {"library_ms", SummaryJson(library)},
      {"service_ms", SummaryJson(service_ms)},
      {"http_ms", SummaryJson(http_ms)},
      {"http_overhead_ms", overhead},
      {"http_ratio", ratio},
      {"store_queue_overhead_ms", d.median - a.median},
      {"http_layer_ms", h.median - d.median},
      {"session_code", kSessionCode},
      {"session_library_ms", SummaryJson(session_ms)},
      {"session_ws_ms", SummaryJson(ws_ms)},
      {"session_ws_overhead_ms", sw.median - sl.median},
      {"wrk", kWrk},
      {"healthz_rps", OrNull(healthz)},
      {"languages_rps", OrNull(langs)},
      {"languages_healthz_ratio", OrNull(rps_ratio)},
  };
  std::ofstream f(args.out);
  f << out.dump(1) << "\n";
  if (!f) Die("cannot write " + args.out);
  std::printf("\nwrote %s\n", args.out.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  try {
    args = ParseArgs(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "server_bench: " << e.what() << "\n";
    return 2;
  }
  char tmpl[] = "/tmp/polyrun-server-bench-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) {
    std::perror("server_bench: mkdtemp");
    return 1;
  }
  const std::string work = tmpl;
  int rc = 1;
  try {
    rc = Bench(args, work);
  } catch (const std::exception& e) {
    std::cerr << "server_bench: " << e.what() << "\n";
  }
  std::error_code ec;
  std::filesystem::remove_all(work, ec);
  return rc;
}
