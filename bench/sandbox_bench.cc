// The sandbox's own cost, without the CLI's process start: Sandbox::Run of a program, and the
// same in a sandbox built ahead of it, beside a bare posix_spawn of the same program, in one
// process and one run. Needs root (cgroups).
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include <iostream>

#include "sandbox/sandbox.h"

extern char** environ;

namespace {

using polyrun::sandbox::Sandbox;
using polyrun::sandbox::SandboxSpec;

Sandbox* TheSandbox() {
  static std::unique_ptr<Sandbox> sb = [] {
    auto cg = polyrun::sandbox::DetectCgroups();
    if (!cg) {
      std::cerr << cg.error().message() << "\n";
      std::exit(1);
    }
    polyrun::sandbox::SandboxConfig cfg;
    cfg.cgroups = std::move(*cg);
    auto s = Sandbox::Create(cfg);
    if (!s) std::exit(1);
    return std::move(*s);
  }();
  return sb.get();
}

void Spawn(const std::vector<std::string>& argv) {
  std::vector<char*> a;
  for (const auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
  a.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  pid_t pid;
  posix_spawn(&pid, a[0], &fa, nullptr, a.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  int st;
  waitpid(pid, &st, 0);
}

const std::vector<std::vector<std::string>> kPrograms = {
    {"/usr/bin/true"},
    {"/usr/bin/bash", "-c", "echo 1"},
    {"/usr/bin/python3", "-c", "print(1)"},
};

void BM_Bare(benchmark::State& state) {
  const auto& argv = kPrograms[static_cast<size_t>(state.range(0))];
  for (auto _ : state) Spawn(argv);
  state.SetLabel(argv[0]);
}

SandboxSpec Spec(const std::vector<std::string>& argv) {
  SandboxSpec spec;
  spec.argv = argv;
  spec.env = {"PATH=/usr/bin:/bin", "LANG=C.UTF-8"};
  for (const char* p : {"/usr", "/bin", "/lib", "/lib64", "/etc/ld.so.cache"})
    spec.binds.push_back({p, false, ""});
  return spec;
}

void BM_Sandboxed(benchmark::State& state) {
  const auto& argv = kPrograms[static_cast<size_t>(state.range(0))];
  const SandboxSpec spec = Spec(argv);
  for (auto _ : state) {
    auto r = TheSandbox()->Run(spec);
    if (!r || r->exit_code != 0) state.SkipWithError("sandboxed run failed");
  }
  state.SetLabel(argv[0]);
}

// The same run in a sandbox built ahead of it (Sandbox::Prebuild, off the clock). range(1) 1:
// the run has memory and process limits of its own, which RunPrebuilt sets on the tree's cgroup.
void BM_Prebuilt(benchmark::State& state) {
  const auto& argv = kPrograms[static_cast<size_t>(state.range(0))];
  const SandboxSpec tree = Spec(argv);
  SandboxSpec run = tree;
  if (state.range(1) == 1) {
    run.limits.memory_bytes = 128u << 20;
    run.limits.processes = 32;
  }
  for (auto _ : state) {
    state.PauseTiming();
    auto box = TheSandbox()->Prebuild(tree);
    if (!box || !box->WaitReady(std::chrono::seconds(10))) {
      state.SkipWithError("prebuild failed");
      break;
    }
    state.ResumeTiming();
    auto r = TheSandbox()->RunPrebuilt(std::move(*box), run);
    if (!r || r->exit_code != 0) state.SkipWithError("prebuilt run failed");
  }
  state.SetLabel(argv[0] + (state.range(1) == 1 ? ", its own memory and processes" : ""));
}

BENCHMARK(BM_Bare)->DenseRange(0, 2)->Unit(benchmark::kMillisecond)->MinTime(1.0);
BENCHMARK(BM_Sandboxed)->DenseRange(0, 2)->Unit(benchmark::kMillisecond)->MinTime(1.0);
BENCHMARK(BM_Prebuilt)
    ->ArgsProduct({{0, 1, 2}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->MinTime(1.0);

}  // namespace

BENCHMARK_MAIN();
