// Cold against warm runs, beside the bare interpreter, in one process and one run. For each
// language with a warm bootstrap, a hello world N times each way:
//   bare  posix_spawn of the interpreter itself (`python3 -c 'print(1)'`), clean environment,
//         stdout through a pipe, no isolation at all: the floor a cold run is measured against;
//   cold  Engine::Run on an engine without warm pools: a sandbox built for the run;
//   prebuilt  Engine::Run on an engine with prebuilt sandboxes alone: the run's interpreter
//         starts in a sandbox built ahead of it (each run started once one is ready);
//   warm  Engine::Run with warm pools, each run started once the pool has a sandbox ready (the
//         latency a run sees when the pool keeps up; the filler's work is off the clock);
//   zygote  Engine::Run forked from the language's fork server (languages with a [zygote]), on
//         an engine without warm pools.
// The paths are interleaved in blocks after a warm-up, so machine noise lands on all alike.
// Then the memory one waiting warm sandbox, one prebuilt sandbox and one zygote cost (their
// cgroups' peaks), and the sustained throughput of Python `print(1)` at concurrency 1, 2, 4 and 8:
// bare; fork, the floor of any fork-per-run design (bench/fork_floor.py: a Python parent holding
// what the zygote holds forks a child per run, with no isolation at all); cold, warm pools alone,
// the zygote alone, and served (warm pools and the zygote, as `polyrun serve` keeps them). Each
// isolated path's rate is given as a ratio to bare and to fork. Last, the CPU per run the issue's
// 1500 runs/s leave on this machine, beside the fork floor's and a network namespace's.
//
// Needs root (the sandbox). Prints one table and writes bench/results/warm.json.
//
//   warm_bench [--runs N] [--languages python,javascript,typescript,ruby,r,java] [--out FILE]
//              [--throughput-seconds S] [--throughput-paths bare,fork,cold,warm,zygote,served]
//              [--concurrency 1,2,4,8]
// An empty --languages list skips the latency table (for profiling one throughput path).
#include <fcntl.h>
#include <sched.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "engine/engine.h"
#include "stats.h"

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;
using polyrun::bench::Ms;
using polyrun::bench::Percentile;
using polyrun::bench::SummaryJson;
using polyrun::engine::Engine;
using polyrun::engine::EngineConfig;
using polyrun::engine::ExecutionRequest;
using polyrun::engine::ExecutionResult;

struct Hello {
  const char* code;
  std::vector<std::string> bare;  // the interpreter running the same code
};
const std::map<std::string, Hello> kHellos = {
    {"python", {"print(1)", {"/usr/bin/python3", "-s", "-c", "print(1)"}}},
    {"javascript", {"console.log(1)", {"/usr/bin/node", "-e", "console.log(1)"}}},
    // TypeScript's bare floor is Node's: its cold and warm runs run the compiled bundle (the
    // compile stage comes from the artifact cache after the first run).
    {"typescript", {"console.log(1)", {"/usr/bin/node", "-e", "console.log(1)"}}},
    {"ruby", {"puts 1", {"/usr/bin/ruby", "-e", "puts 1"}}},
    {"r", {"cat(\"1\\n\")", {"/usr/bin/Rscript", "--vanilla", "-e", "cat(\"1\\n\")"}}},
    // Java's bare floor: the JVM with the run stage's start-up flags on the hello class, which
    // the bench compiles once into {classes} (its cold and warm runs compile in their compile
    // stage, or take the artifact cache's jar).
    {"java",
     {"public class Main { public static void main(String[] a) { System.out.println(1); } }",
      {"/usr/lib/jvm/java-17-openjdk-amd64/bin/java", "-XX:+UseSerialGC", "-Xshare:auto",
       "-XX:-UsePerfData", "-cp", "{classes}", "Main"}}},
};

[[noreturn]] void Die(const std::string& what) {
  std::cerr << "warm_bench: " << what << "\n";
  std::exit(1);
}

// The interpreter alone: spawn, read its stdout to the end, reap.
std::string Bare(const std::vector<std::string>& argv) {
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) Die("pipe2 failed");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  static char path[] = "PATH=/usr/bin:/bin";
  static char lang[] = "LANG=C.UTF-8";
  char* env[] = {path, lang, nullptr};
  pid_t pid = 0;
  if (posix_spawn(&pid, args[0], &actions, nullptr, args.data(), env) != 0) Die("posix_spawn");
  posix_spawn_file_actions_destroy(&actions);
  ::close(out[1]);
  std::string text;
  char buf[4096];
  for (ssize_t n; (n = ::read(out[0], buf, sizeof buf)) > 0;) text.append(buf, n);
  ::close(out[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return text;
}

std::unique_ptr<Engine> MakeEngine(const std::string& cache, size_t pool, bool zygotes,
                                   size_t prebuilt) {
  EngineConfig config;
  config.languages_dir = POLYRUN_LANGUAGES_DIR;
  config.cache_dir = cache;
  config.warm_pool_size = pool;
  config.zygotes = zygotes;
  config.prebuilt_sandboxes = prebuilt;
  auto e = Engine::Create(config);
  if (!e) Die(e.error().message());
  return std::move(*e);
}

// Waits (bounded) until the language's pool has a sandbox ready.
void AwaitReady(Engine& engine, const std::string& language) {
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  while (engine.WarmPoolStats()[language].ready == 0) {
    if (Clock::now() > deadline) Die(language + ": no warm sandbox within 60 s");
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

// Waits (bounded) until the language has a prebuilt sandbox ready.
void AwaitPrebuilt(Engine& engine, const std::string& language) {
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  while (engine.PrebuiltStats()[language].ready == 0) {
    if (Clock::now() > deadline) Die(language + ": no prebuilt sandbox within 60 s");
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

// Waits (bounded) until the language's zygote runs.
void AwaitZygote(Engine& engine, const std::string& language) {
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  while (!engine.ZygoteStats()[language].ready) {
    if (Clock::now() > deadline) {
      Die(language + ": no zygote within 60 s: " + engine.ZygoteStats()[language].last_error);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

// Waits (bounded, 120 s) until every warm pool of `engine` has a sandbox ready or has failed
// to start one, and every zygote runs or has failed: the first fills (a JVM, R) would
// otherwise run beside the first measurements, whichever languages are measured.
void AwaitFirstFills(Engine& engine) {
  const auto deadline = Clock::now() + std::chrono::seconds(120);
  auto filling = [&engine] {
    for (const auto& [lang, st] : engine.WarmPoolStats()) {
      if (st.ready == 0 && st.failed == 0) return true;
    }
    for (const auto& [lang, st] : engine.ZygoteStats()) {
      if (!st.ready && st.last_error.empty()) return true;
    }
    for (const auto& [lang, st] : engine.PrebuiltStats()) {
      if (st.ready == 0 && st.failed == 0) return true;
    }
    return false;
  };
  while (filling() && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

// Machine-wide CPU time so far, in ms: every CPU's user, nice, system, irq and softirq time from
// /proc/stat, so kernel workers count too (a network namespace is torn down on them).
double BusyMs() {
  std::ifstream stat("/proc/stat");
  std::string cpu;
  long long user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0;
  stat >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq;
  if (cpu != "cpu") Die("/proc/stat: no cpu line");
  return 1000.0 * static_cast<double>(user + nice + system + irq + softirq) /
         static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// The machine's CPU per child of `children` forked over two threads, each of which exits at once,
// or after unshare(flags) when flags are set. Counted until a second after the last child's end,
// when the kernel's teardown of what they made has run.
double CpuPerChildMs(size_t children, int flags) {
  const double busy = BusyMs();
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([children, flags] {
      for (size_t i = 0; i < children / 2; ++i) {
        const pid_t pid = ::fork();
        if (pid == 0) ::_exit(flags != 0 && ::unshare(flags) != 0 ? 1 : 0);
        int status = 0;
        if (pid < 0 || ::waitpid(pid, &status, 0) != pid || status != 0) {
          Die("isolation budget: fork or unshare failed");
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  std::this_thread::sleep_for(std::chrono::seconds(1));
  return (BusyMs() - busy) / static_cast<double>(children);
}

// The throughput target as CPU per run on this machine, beside what a run cannot avoid:
// the fork floor's CPU per run at its best rate (when the fork path ran), and a network namespace
// made and freed (each run has its own): fork-and-exit children with and without
// unshare(CLONE_NEWNET), interleaved twice.
json IsolationBudget(const json& throughput) {
  constexpr double kTargetRunsPerSecond = 1500;
  constexpr size_t kChildren = 2000;
  const auto cpus = static_cast<double>(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<double> bare, netns;
  for (int i = 0; i < 2; ++i) {
    bare.push_back(CpuPerChildMs(kChildren, 0));
    netns.push_back(CpuPerChildMs(kChildren, CLONE_NEWNET));
  }
  json j;
  j["target_runs_per_second"] = kTargetRunsPerSecond;
  j["cpus"] = cpus;
  j["budget_ms"] = 1000 * cpus / kTargetRunsPerSecond;
  j["fork_exit_ms"] = *std::min_element(bare.begin(), bare.end());
  j["fork_unshare_net_exit_ms"] = *std::min_element(netns.begin(), netns.end());
  j["netns_ms"] = j["fork_unshare_net_exit_ms"].get<double>() - j["fork_exit_ms"].get<double>();
  std::printf("\nCPU per run (all CPUs, kernel workers included):\n");
  const auto line = [](const std::string& what, double ms, const std::string& note) {
    std::printf("  %-46s %6.2f ms%s\n", what.c_str(), ms, note.c_str());
  };
  line("budget of " + std::to_string(static_cast<int>(kTargetRunsPerSecond)) + " runs/s on " +
           std::to_string(static_cast<int>(cpus)) + " CPUs",
       j["budget_ms"].get<double>(), "");
  if (throughput.contains("fork")) {
    double best = 0;
    for (const auto& [c, row] : throughput["fork"].items()) {
      best = std::max(best, row["runs_per_second"].get<double>());
    }
    j["fork_floor_ms"] = 1000 * cpus / best;
    line("the fork floor at its best rate (" + std::to_string(static_cast<int>(best)) + "/s)",
         j["fork_floor_ms"].get<double>(), "");
  }
  char note[96];
  std::snprintf(note, sizeof note, "  (a child %.2f ms with one, %.2f without)",
                j["fork_unshare_net_exit_ms"].get<double>(), j["fork_exit_ms"].get<double>());
  line("a network namespace made and freed", j["netns_ms"].get<double>(), note);
  return j;
}

// The fork floor at one concurrency (bench/fork_floor.py): its runs' latencies, and its rate.
std::pair<std::vector<double>, double> ForkFloor(const Hello& hello, double seconds,
                                                 int concurrency) {
  const std::string text =
      Bare({"/usr/bin/python3", "-s", std::string(POLYRUN_BENCH_DIR) + "/fork_floor.py",
            "--seconds", std::to_string(seconds), "--concurrency", std::to_string(concurrency),
            "--code", hello.code, "--expect", "1\n"});
  const json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.contains("samples_ms") || !j.contains("seconds")) {
    Die("throughput fork: bench/fork_floor.py gave no result (its error is above)");
  }
  auto samples = j["samples_ms"].get<std::vector<double>>();
  const double rate = static_cast<double>(samples.size()) / j["seconds"].get<double>();
  return {std::move(samples), rate};
}

// Sustained throughput of Python `print(1)` at each concurrency: that many threads each running
// back to back for `seconds`, per path (fork: its own parent, that many children at a time).
// Warm runs fall back to cold ones whenever the pool is empty, so "warm" reports which share of
// its runs found a sandbox ready; "served" (warm pools and the zygote, as `polyrun serve` keeps
// them) which share started warm and which forked.
json Throughput(Engine& cold_engine, Engine& warm_engine, Engine& zygote_engine,
                Engine& served_engine, double seconds, const std::vector<std::string>& paths,
                const std::vector<int>& concurrencies) {
  const Hello& hello = kHellos.at("python");
  ExecutionRequest req;
  req.language = "python";
  req.code = hello.code;
  json out = json::object();
  std::printf("\n%-6s %11s %10s %10s %10s   %s\n", "path", "concurrency", "runs/s", "median ms",
              "p99 ms", "runs/s against bare, against fork");
  std::map<int, double> bare_rate, fork_rate;
  for (const std::string& path_name : paths) {
    const char* path = path_name.c_str();
    for (int concurrency : concurrencies) {
      std::vector<double> all;
      double rate = 0;
      std::atomic<size_t> warm_starts{0}, zygote_starts{0};
      if (path_name == "fork") {
        std::tie(all, rate) = ForkFloor(hello, seconds, concurrency);
      } else {
        std::vector<std::vector<double>> lat(static_cast<size_t>(concurrency));
        const auto t0 = Clock::now();
        const auto end = t0 + std::chrono::duration_cast<Clock::duration>(
                                  std::chrono::duration<double>(seconds));
        std::vector<std::thread> threads;
        for (int t = 0; t < concurrency; ++t) {
          threads.emplace_back([&, t] {
            while (Clock::now() < end) {
              const auto s = Clock::now();
              if (path_name == "bare") {
                if (Bare(hello.bare) != "1\n") Die("throughput bare: wrong output");
              } else {
                Engine& e = path_name == "cold"     ? cold_engine
                            : path_name == "warm"   ? warm_engine
                            : path_name == "zygote" ? zygote_engine
                                                    : served_engine;
                const ExecutionResult r = e.Run(req);
                if (r.stdout_text != "1\n") {
                  Die(std::string("throughput ") + path + ": " + r.reason);
                }
                if (r.usage.start == "warm") ++warm_starts;
                if (r.usage.start == "zygote") ++zygote_starts;
              }
              lat[static_cast<size_t>(t)].push_back(Ms(Clock::now() - s));
            }
          });
        }
        for (auto& th : threads) th.join();
        const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
        for (const auto& v : lat) all.insert(all.end(), v.begin(), v.end());
        rate = static_cast<double>(all.size()) / elapsed;
      }
      if (path_name == "bare") bare_rate[concurrency] = rate;
      if (path_name == "fork") fork_rate[concurrency] = rate;
      json j = SummaryJson(all);
      j["runs_per_second"] = rate;
      std::printf("%-6s %11d %10.0f %10.2f %10.2f   ", path, concurrency, rate, Percentile(all, 50),
                  Percentile(all, 99));
      // Without a baseline in the same run there is no ratio to it.
      const auto ratio = [&](const char* name, const std::map<int, double>& base) {
        const auto b = base.find(concurrency);
        if (b == base.end() || path_name == name) {
          std::printf("-");
          return;
        }
        j[std::string("ratio_to_") + name] = rate / b->second;
        std::printf("%.2f", rate / b->second);
      };
      ratio("bare", bare_rate);
      std::printf(", ");
      ratio("fork", fork_rate);
      // Runs a path could not serve (an empty pool, a zygote being replaced) ran cold.
      const auto share = [&](size_t n) {
        return static_cast<double>(n) / static_cast<double>(all.size());
      };
      if (path_name == "warm") {
        j["share"] = share(warm_starts);
        std::printf("   (%.0f%% started warm)", 100.0 * share(warm_starts));
      }
      if (path_name == "zygote") {
        j["share"] = share(zygote_starts);
        std::printf("   (%.0f%% forked)", 100.0 * share(zygote_starts));
      }
      if (path_name == "served") {
        j["share_warm"] = share(warm_starts);
        j["share_zygote"] = share(zygote_starts);
        std::printf("   (%.0f%% started warm, %.0f%% forked)", 100.0 * share(warm_starts),
                    100.0 * share(zygote_starts));
      }
      std::printf("\n");
      out[path][std::to_string(concurrency)] = j;
    }
  }
  return out;
}

int Bench(size_t runs, const std::vector<std::string>& languages, const std::string& out,
          double throughput_seconds, const std::vector<std::string>& throughput_paths,
          const std::vector<int>& concurrencies) {
  const std::string cache = std::filesystem::temp_directory_path() / "polyrun-warm-bench-cache";
  std::filesystem::create_directories(cache);
  auto cold_engine = MakeEngine(cache, 0, false, 0);
  auto warm_engine = MakeEngine(cache, 1, false, 0);
  warm_engine->StartWarmPools();
  auto zygote_engine = MakeEngine(cache, 0, true, 0);
  zygote_engine->StartWarmPools();
  auto prebuilt_engine = MakeEngine(cache, 0, false, 1);
  prebuilt_engine->StartWarmPools();
  AwaitFirstFills(*warm_engine);
  AwaitFirstFills(*zygote_engine);
  AwaitFirstFills(*prebuilt_engine);

  json results = json::object();
  std::printf("%-11s %-8s %10s %10s %10s   %s\n", "language", "path", "median ms", "p90 ms",
              "p99 ms", "ratio to bare (median)");
  for (const auto& lang : languages) {
    auto hello = kHellos.find(lang);
    if (hello == kHellos.end()) Die("no hello world for " + lang);
    std::vector<std::string> bare_argv = hello->second.bare;
    if (lang == "java") {
      const std::string classes = cache + "/java-bare";
      std::filesystem::create_directories(classes);
      std::ofstream(classes + "/Main.java") << hello->second.code;
      Bare({"/usr/lib/jvm/java-17-openjdk-amd64/bin/javac", "-d", classes, classes + "/Main.java"});
      std::replace(bare_argv.begin(), bare_argv.end(), std::string("{classes}"), classes);
    }
    ExecutionRequest req;
    req.language = lang;
    req.code = hello->second.code;
    std::map<std::string, std::vector<double>> ms;
    const bool has_zygote = zygote_engine->ZygoteStats().contains(lang);
    std::vector<std::pair<std::string, std::function<void(bool)>>> paths = {
        {"bare",
         [&](bool timed) {
           const auto t0 = Clock::now();
           const std::string text = Bare(bare_argv);
           const double d = Ms(Clock::now() - t0);
           if (text != "1\n") Die(lang + " bare: printed \"" + text + "\"");
           if (timed) ms["bare"].push_back(d);
         }},
        {"cold",
         [&](bool timed) {
           const auto t0 = Clock::now();
           const ExecutionResult r = cold_engine->Run(req);
           const double d = Ms(Clock::now() - t0);
           if (r.stdout_text != "1\n" || r.usage.start != "cold") Die(lang + " cold: " + r.reason);
           if (timed) ms["cold"].push_back(d);
         }},
        {"prebuilt",
         [&](bool timed) {
           AwaitPrebuilt(*prebuilt_engine, lang);
           const auto t0 = Clock::now();
           const ExecutionResult r = prebuilt_engine->Run(req);
           const double d = Ms(Clock::now() - t0);
           if (r.stdout_text != "1\n" || r.usage.start != "prebuilt") {
             Die(lang + " prebuilt: " + r.usage.start + " " + r.reason + " " + r.stderr_text);
           }
           if (timed) ms["prebuilt"].push_back(d);
         }},
        {"warm",
         [&](bool timed) {
           AwaitReady(*warm_engine, lang);
           const auto t0 = Clock::now();
           const ExecutionResult r = warm_engine->Run(req);
           const double d = Ms(Clock::now() - t0);
           if (r.stdout_text != "1\n" || r.usage.start != "warm") {
             Die(lang + " warm: " + r.usage.start + " " + r.reason + " " + r.stderr_text);
           }
           if (timed) ms["warm"].push_back(d);
         }},
    };
    if (has_zygote) {
      paths.emplace_back("zygote", [&](bool timed) {
        AwaitZygote(*zygote_engine, lang);
        const auto t0 = Clock::now();
        const ExecutionResult r = zygote_engine->Run(req);
        const double d = Ms(Clock::now() - t0);
        if (r.stdout_text != "1\n" || r.usage.start != "zygote") {
          Die(lang + " zygote: " + r.usage.start + " " + r.reason + " " + r.stderr_text);
        }
        if (timed) ms["zygote"].push_back(d);
      });
    }
    for (int i = 0; i < 3; ++i) {
      for (const auto& [name, p] : paths) p(false);
    }
    const size_t block = 10;
    for (size_t done = 0, b = 0; done < runs; done += block, ++b) {
      for (size_t k = 0; k < paths.size(); ++k) {
        const auto& p = paths[(b + k) % paths.size()].second;  // each path leads in turn
        for (size_t i = 0; i < block; ++i) p(true);
      }
    }
    AwaitReady(*warm_engine, lang);
    const auto stats = warm_engine->WarmPoolStats()[lang];
    const double bare = Percentile(ms["bare"], 50);
    json j = {{"code", hello->second.code},
              {"warm_sandbox_memory_bytes", stats.ready ? stats.memory_bytes / stats.ready : 0}};
    for (const char* name : {"bare", "cold", "prebuilt", "warm", "zygote"}) {
      if (!ms.contains(name)) continue;
      const auto& v = ms[name];
      std::printf("%-11s %-8s %10.2f %10.2f %10.2f   %.2f\n", lang.c_str(), name, Percentile(v, 50),
                  Percentile(v, 90), Percentile(v, 99), Percentile(v, 50) / bare);
      j[name] = SummaryJson(v);
    }
    j["cold_overhead_ms"] = Percentile(ms["cold"], 50) - bare;
    j["prebuilt_overhead_ms"] = Percentile(ms["prebuilt"], 50) - bare;
    j["warm_over_bare"] = Percentile(ms["warm"], 50) / bare;
    AwaitPrebuilt(*prebuilt_engine, lang);
    const auto prebuilt_stats = prebuilt_engine->PrebuiltStats()[lang];
    j["prebuilt_sandbox_memory_bytes"] =
        prebuilt_stats.ready ? prebuilt_stats.memory_bytes / prebuilt_stats.ready : 0;
    std::printf(
        "%-11s over bare: cold %.2f ms, prebuilt %.2f ms; one waiting warm sandbox %.1f MB, "
        "prebuilt %.2f MB\n",
        lang.c_str(), j["cold_overhead_ms"].get<double>(), j["prebuilt_overhead_ms"].get<double>(),
        j["warm_sandbox_memory_bytes"].get<double>() / 1048576.0,
        j["prebuilt_sandbox_memory_bytes"].get<double>() / 1048576.0);
    if (has_zygote) {
      j["zygote_over_bare"] = Percentile(ms["zygote"], 50) / bare;
      j["zygote_memory_bytes"] = zygote_engine->ZygoteStats()[lang].memory_bytes;
      std::printf("%-11s zygote %.2fx bare; the zygote %.1f MB\n", lang.c_str(),
                  j["zygote_over_bare"].get<double>(),
                  j["zygote_memory_bytes"].get<double>() / 1048576.0);
    }
    results[lang] = j;
  }
  if (throughput_seconds > 0) {
    warm_engine.reset();
    // Pools as `polyrun serve` keeps them: one engine with them alone, and one as served (with
    // the zygotes); the zygote alone is zygote_engine.
    auto pooled = MakeEngine(cache, EngineConfig{}.warm_pool_size, false, 0);
    pooled->StartWarmPools();
    AwaitReady(*pooled, "python");
    auto served =
        MakeEngine(cache, EngineConfig{}.warm_pool_size, true, EngineConfig{}.prebuilt_sandboxes);
    served->StartWarmPools();
    AwaitZygote(*served, "python");
    AwaitZygote(*zygote_engine, "python");
    results["throughput_python"] = Throughput(*cold_engine, *pooled, *zygote_engine, *served,
                                              throughput_seconds, throughput_paths, concurrencies);
    results["isolation_budget"] = IsolationBudget(results["throughput_python"]);
  }
  std::filesystem::create_directories(std::filesystem::path(out).parent_path());
  std::ofstream(out) << results.dump(1) << "\n";
  std::printf("wrote %s\n", out.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  size_t runs = 100;
  std::vector<std::string> languages = {"python", "javascript", "typescript", "ruby", "r", "java"};
  std::string out = std::string(POLYRUN_BENCH_RESULTS) + "/warm.json";
  double throughput_seconds = 3;
  std::vector<std::string> paths = {"bare", "fork", "cold", "warm", "zygote", "served"};
  std::vector<int> concurrencies = {1, 2, 4, 8};
  const auto list = [](const char* arg) {
    std::vector<std::string> items;
    std::stringstream ss(arg);
    for (std::string item; std::getline(ss, item, ',');) items.push_back(item);
    return items;
  };
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--runs" && i + 1 < argc) {
      runs = std::max(10, std::atoi(argv[++i]));
    } else if (a == "--languages" && i + 1 < argc) {
      languages = list(argv[++i]);
    } else if (a == "--out" && i + 1 < argc) {
      out = argv[++i];
    } else if (a == "--throughput-seconds" && i + 1 < argc) {
      throughput_seconds = std::atof(argv[++i]);
    } else if (a == "--throughput-paths" && i + 1 < argc) {
      paths = list(argv[++i]);
      for (const auto& p : paths) {
        if (p != "bare" && p != "fork" && p != "cold" && p != "warm" && p != "zygote" &&
            p != "served") {
          std::cerr << "warm_bench: --throughput-paths: unknown path '" << p
                    << "' (bare, fork, cold, warm, zygote, served)\n";
          return 2;
        }
      }
    } else if (a == "--concurrency" && i + 1 < argc) {
      concurrencies.clear();
      for (const auto& c : list(argv[++i])) {
        const int n = std::atoi(c.c_str());
        if (n < 1 || n > 64) {
          std::cerr << "warm_bench: --concurrency: '" << c << "' is not 1 to 64\n";
          return 2;
        }
        concurrencies.push_back(n);
      }
    } else {
      std::cerr << "usage: warm_bench [--runs N] [--languages a,b] [--out FILE] "
                   "[--throughput-seconds S (0: skip)]\n"
                   "                  [--throughput-paths bare,fork,cold,warm,zygote,served] "
                   "[--concurrency 1,2,4,8]\n";
      return 2;
    }
  }
  return Bench(runs, languages, out, throughput_seconds, paths, concurrencies);
}
