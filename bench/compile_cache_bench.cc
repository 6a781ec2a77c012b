// The compiled-artifact cache on a repeated C++ hello, through the library (Engine::Run), in one
// process and one run: the compile stage with g++ (cache off) beside the same stage served from
// the cache, and each whole run. The compile stage is timed from the engine's own
// compile_started/compile_finished events. Needs root (cgroups). Prints the ratio at the end.
#include <benchmark/benchmark.h>

#include <chrono>
#include <filesystem>
#include <iostream>

#include "engine/engine.h"

namespace {

using polyrun::engine::Engine;
using Clock = std::chrono::steady_clock;

const char* kHello = "#include <iostream>\nint main() { std::cout << \"hi\\n\"; }\n";

std::unique_ptr<Engine> MakeEngine(const std::string& cache_dir, uint64_t cache_bytes) {
  polyrun::engine::EngineConfig cfg;
  cfg.languages_dir = POLYRUN_LANGUAGES_DIR;
  cfg.cache_dir = cache_dir;
  cfg.artifact_cache_bytes = cache_bytes;
  auto e = Engine::Create(cfg);
  if (!e) {
    std::cerr << e.error().message() << "\n";
    std::exit(1);
  }
  return std::move(*e);
}

std::string TempCacheDir() {
  auto dir = std::filesystem::temp_directory_path() /
             ("polyrun-cache-bench-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return dir.string();
}

double g_stage_ms[2] = {0, 0};  // [cache off, cache hit]: mean compile stage

void BM_CppHello(benchmark::State& state) {
  const bool cached = state.range(0) == 1;
  static const std::string cache_dir = TempCacheDir();
  auto engine = MakeEngine(cache_dir, cached ? (1ull << 30) : 0);
  polyrun::engine::ExecutionRequest req;
  req.language = "cpp";
  req.code = kHello;
  if (cached) engine->Run(req);  // fill the cache
  Clock::time_point started;
  double stage_total_ms = 0;
  auto sink = [&](const polyrun::engine::Event& e) {
    using K = polyrun::engine::Event::Kind;
    if (e.kind == K::kCompileStarted) started = Clock::now();
    if (e.kind == K::kCompileFinished) {
      stage_total_ms += std::chrono::duration<double, std::milli>(Clock::now() - started).count();
    }
  };
  for (auto _ : state) {
    auto r = engine->Run(req, sink);
    if (r.stdout_text != "hi\n" || (r.compile && r.compile->cached != cached)) {
      state.SkipWithError("unexpected result");
      break;
    }
  }
  const double mean = stage_total_ms / static_cast<double>(state.iterations());
  state.counters["compile_stage_ms"] = mean;
  g_stage_ms[cached ? 1 : 0] = mean;
  state.SetLabel(cached ? "cache hit" : "cache off (g++ every time)");
}
BENCHMARK(BM_CppHello)->Arg(0)->Iterations(10)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_CppHello)->Arg(1)->Iterations(50)->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  std::filesystem::remove_all(std::filesystem::temp_directory_path() /
                              ("polyrun-cache-bench-" + std::to_string(::getpid())));
  if (g_stage_ms[0] > 0 && g_stage_ms[1] > 0) {
    std::printf("compile stage: g++ %.1f ms, cache hit %.3f ms (%.0fx faster; target <= 5 ms)\n",
                g_stage_ms[0], g_stage_ms[1], g_stage_ms[0] / g_stage_ms[1]);
  }
  return 0;
}
