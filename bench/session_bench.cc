// Sessions against one-shot runs, in one process and one run: for each language with a session
// driver, N executions of a trivial expression (`1+1` or its spelling) through
//   (a) Session::Execute   one live session: the command, the driver's frames, the fold;
//   (b) Engine::Run        the same code as a fresh isolated run each time (the baseline);
// interleaved in blocks after a warm-up, so machine noise lands on both alike. Then the idle
// driver's own resident memory (VmRSS, reported from inside the sandbox) and the time from
// Session::Start to ready.
//
// Needs root (the sandbox). Prints one table and writes the figures as JSON (default
// bench/results/session.json). Over WebSocket: server_bench; through Jupyter:
// bench/jupyter_bench.py.
//
//   session_bench [--runs N] [--languages python,javascript,…] [--out FILE]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine/session.h"
#include "stats.h"

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;
using polyrun::bench::Ms;
using polyrun::bench::Percentile;
using polyrun::bench::SummaryJson;
using polyrun::engine::Engine;
using polyrun::engine::ExecutionRequest;
using polyrun::engine::Session;
using polyrun::engine::SessionRequest;
using polyrun::engine::Status;

// The trivial expression, the same as a one-shot program, and a cell that prints the
// driver's own VmRSS in kB.
struct Probe {
  const char* expr;
  const char* program;
  const char* rss;
};
const std::map<std::string, Probe> kProbes = {
    {"python",
     {"1+1", "print(1+1)",
      "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmRSS')][0])"}},
    {"javascript",
     {"1+1", "console.log(1+1)",
      "console.log(require('fs').readFileSync('/proc/self/status','utf8')"
      ".match(/VmRSS:\\s+(\\d+)/)[1])"}},
    {"typescript",
     {"1+1", "console.log(1+1)",
      "console.log(require('fs').readFileSync('/proc/self/status','utf8')"
      ".match(/VmRSS:\\s+(\\d+)/)[1])"}},
    {"ruby", {"1+1", "puts 1+1", "puts File.read('/proc/self/status')[/VmRSS:\\s+(\\d+)/, 1]"}},
    {"lua",
     {"1+1", "print(1+1)",
      "for l in io.lines('/proc/self/status') do local v = l:match('^VmRSS:%s+(%d+)') "
      "if v then print(v) end end"}},
    {"r",
     {"1+1", "print(1+1)",
      "cat(sub('VmRSS:\\\\s+(\\\\d+).*', '\\\\1', grep('VmRSS', "
      "readLines('/proc/self/status'), value = TRUE)), '\\n')"}},
    {"bash", {"echo $((1+1))", "echo $((1+1))", "awk '/VmRSS/ {print $2}' /proc/$$/status"}},
};

struct Row {
  std::string language;
  double ready_ms = 0;
  std::vector<double> session_ms, run_ms;
  uint64_t rss_kb = 0;
};

int Bench(int runs, const std::vector<std::string>& languages, const std::string& out) {
  polyrun::engine::EngineConfig config;
  config.languages_dir = POLYRUN_LANGUAGES_DIR;
  auto engine = Engine::Create(config);
  if (!engine) {
    std::cerr << "session_bench: " << engine.error().message() << "\n";
    return 1;
  }
  std::vector<Row> rows;
  for (const auto& lang : languages) {
    auto probe = kProbes.find(lang);
    if (probe == kProbes.end()) {
      std::cerr << "session_bench: no probe for " << lang << "\n";
      return 2;
    }
    SessionRequest sr;
    sr.language = lang;
    auto launch = (*engine)->PrepareSession(sr, std::chrono::minutes(10));
    if (!launch) {
      std::cerr << "session_bench: " << lang << ": " << launch.error().message() << "\n";
      continue;
    }
    Row row;
    row.language = lang;
    const auto t0 = Clock::now();
    auto session = Session::Start((*engine)->sandbox(), std::move(*launch), "se_bench_" + lang,
                                  nullptr, std::chrono::seconds(30));
    if (!session) {
      std::cerr << "session_bench: " << lang << ": " << session.error().message() << "\n";
      continue;
    }
    row.ready_ms = Ms(Clock::now() - t0);
    ExecutionRequest req;
    req.code = probe->second.expr;
    ExecutionRequest one_shot;
    one_shot.language = lang;
    one_shot.code = probe->second.program;
    auto check = [&](const polyrun::engine::ExecutionResult& r, const char* path) {
      if (r.status != Status::kOk) {
        std::cerr << "session_bench: " << lang << " " << path << ": " << r.reason << "\n";
        std::exit(1);
      }
    };
    for (int i = 0; i < 5; ++i) check((*session)->Execute(req, nullptr), "warm-up");
    check((*engine)->Run(one_shot), "warm-up");
    const int block = 10;
    for (int done = 0; done < runs; done += block) {
      for (int i = 0; i < block; ++i) {
        auto t = Clock::now();
        check((*session)->Execute(req, nullptr), "session");
        row.session_ms.push_back(Ms(Clock::now() - t));
      }
      for (int i = 0; i < block / 5; ++i) {  // one-shot runs are ~100x slower: fewer of them
        auto t = Clock::now();
        check((*engine)->Run(one_shot), "run");
        row.run_ms.push_back(Ms(Clock::now() - t));
      }
    }
    ExecutionRequest rss;
    rss.code = probe->second.rss;
    auto r = (*session)->Execute(rss, nullptr);
    row.rss_kb = std::strtoull(r.stdout_text.c_str(), nullptr, 10);
    (*session)->Close("bench done");
    rows.push_back(std::move(row));
  }

  std::printf("%-11s %9s %12s %12s %12s %12s %9s %10s\n", "language", "ready ms", "session p50",
              "session p99", "run p50", "run p99", "ratio", "idle RSS");
  json j = json::array();
  for (const auto& r : rows) {
    const double s50 = Percentile(r.session_ms, 50), r50 = Percentile(r.run_ms, 50);
    std::printf("%-11s %9.1f %10.3f ms %10.3f ms %10.2f ms %10.2f ms %9.1f %7.1f MB\n",
                r.language.c_str(), r.ready_ms, s50, Percentile(r.session_ms, 99), r50,
                Percentile(r.run_ms, 99), s50 > 0 ? r50 / s50 : 0, r.rss_kb / 1024.0);
    j.push_back({{"language", r.language},
                 {"ready_ms", r.ready_ms},
                 {"session_ms", SummaryJson(r.session_ms)},
                 {"run_ms", SummaryJson(r.run_ms)},
                 {"run_over_session", s50 > 0 ? r50 / s50 : 0},
                 {"idle_rss_bytes", r.rss_kb * 1024}});
  }
  std::printf("(ratio: a one-shot isolated run's median over a session execution's median)\n");
  std::filesystem::create_directories(std::filesystem::path(out).parent_path());
  std::ofstream(out) << j.dump(2) << "\n";
  std::printf("wrote %s\n", out.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 200;
  std::vector<std::string> languages = {"python", "javascript", "ruby", "lua", "r", "bash"};
  std::string out = std::string(POLYRUN_BENCH_RESULTS) + "/session.json";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--runs" && i + 1 < argc) {
      runs = std::max(10, std::atoi(argv[++i]));
    } else if (a == "--languages" && i + 1 < argc) {
      languages.clear();
      std::stringstream ss(argv[++i]);
      for (std::string l; std::getline(ss, l, ',');) languages.push_back(l);
    } else if (a == "--out" && i + 1 < argc) {
      out = argv[++i];
    } else {
      std::cerr << "usage: session_bench [--runs N] [--languages a,b] [--out FILE]\n";
      return 2;
    }
  }
  return Bench(runs, languages, out);
}
