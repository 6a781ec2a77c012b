#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "engine/artifact_cache.h"
#include "engine/check.h"
#include "engine/config.h"
#include "engine/events.h"
#include "engine/request.h"
#include "engine/result.h"
#include "engine/session.h"
#include "engine/warm_pool.h"
#include "engine/zygotes.h"
#include "languages/registry.h"
#include "sandbox/sandbox.h"

namespace polyrun::engine {

// The library's entry point: validates requests, resolves limits, runs the compile and run
// stages in the sandbox and reports every step as events. Thread-safe.
class Engine {
 public:
  // Loads the language registry and sets up the sandbox (cgroups chosen here, once). Fails
  // with kUnsupported, naming the missing mechanism, when the host cannot sandbox.
  struct Options {
    // Validate every manifest's regexes now (servers) or on first use (one-shot CLI runs,
    // where start-up time is the user's latency).
    bool check_patterns = true;
    // One-shot runs: load only the manifest this id/alias/extension resolves to.
    std::string only_language;
    // Network namespaces kept made ahead of runs (sandbox::SandboxConfig::netns_ready). A
    // process that starts one run or one session passes 0: it makes that run's only, rather
    // than four more (0.7 ms of CPU each) that nothing uses.
    size_t netns_ready = sandbox::SandboxConfig{}.netns_ready;
  };
  static Result<std::unique_ptr<Engine>> Create(const EngineConfig& config, const Options& options);
  static Result<std::unique_ptr<Engine>> Create(const EngineConfig& config) {
    return Create(config, Options{});
  }
  // For tests and tools that bring their own registry and sandbox.
  Engine(EngineConfig config, languages::Registry registry, std::unique_ptr<sandbox::Sandbox> sb,
         ArtifactCache cache = {});

  // Runs one request to completion. Never fails: problems become the result's status
  // (`rejected` for the caller's mistakes, `internal_error` for ours). `sink` (optional) sees
  // every event as it happens; the returned result is the fold of the same events.
  ExecutionResult Run(const ExecutionRequest& request, const EventSink& sink = nullptr);

  // The analyzer: runs each target's [check] recipe in the sandbox (never the program itself).
  // Never fails: a bad request sets `rejected`, a file that cannot be checked its `problem`.
  CheckReport Check(const CheckRequest& request);

  // Validates a session request and resolves what its driver needs. kInvalidArgument with a
  // message naming the field for the caller's mistakes (including a language without a
  // session driver). `lifetime` becomes the sandbox's wall-time limit.
  Result<SessionLaunch> PrepareSession(const SessionRequest& request,
                                       std::chrono::milliseconds lifetime);
  sandbox::Sandbox& sandbox() { return *sandbox_; }

  // Starts warm pools (config warm_pool_size, warm_pool_memory) for every language with a warm
  // bootstrap, zygotes (config zygotes) for every language with a fork server, and prebuilt
  // sandboxes (config prebuilt_sandboxes) for every language; from then on Run takes a warm
  // sandbox that is ready, or else forks the run from the zygote, or else takes a prebuilt
  // sandbox, when the request allows it (see docs/performance.md), and runs cold otherwise.
  // For long-lived processes (the server): all start in the background. Call at most once,
  // before runs start.
  void StartWarmPools();
  // The pools' figures per language; empty without warm pools.
  std::map<std::string, WarmPool::Stats> WarmPoolStats();
  // The prebuilt sandboxes' figures per language, as a pool's; empty without them.
  std::map<std::string, WarmPool::Stats> PrebuiltStats();
  // The zygotes' figures per language; empty without zygotes.
  std::map<std::string, Zygotes::Stats> ZygoteStats();

  languages::Registry& registry() { return registry_; }
  const EngineConfig& config() const { return config_; }
  // The language's installed version (probed once, cached).
  std::string VersionOf(const std::string& id);

 private:
  // The tree of a sandbox built ahead of its runs (warm, zygote, prebuilt): `recipe`'s binds
  // and, `with_program`, its command with [run]'s environment; the language's syscalls and
  // default limits.
  Result<sandbox::SandboxSpec> AheadSpec(const languages::Language& lang,
                                         const languages::Recipe& recipe, bool with_program);
  // The warm sandbox's spec for a language with a warm bootstrap.
  Result<sandbox::SandboxSpec> WarmSpec(const languages::Language& lang);
  // A warm sandbox for this run, or nullopt: the language has none ready, or the request
  // needs what a warm sandbox was not built with (env, other memory or process limits…).
  std::optional<sandbox::PreparedSandbox> TakeWarm(const languages::Language& lang,
                                                   const ExecutionRequest& req,
                                                   const languages::LimitSet& limits);

  // A prebuilt sandbox for this run, or nullopt: none is ready, or the run needs what the tree
  // was not built with (a network, other memory or process limits, a file over its size limit).
  std::optional<sandbox::PreparedSandbox> TakePrebuilt(const languages::Language& lang,
                                                       const ExecutionRequest& req,
                                                       const languages::LimitSet& limits,
                                                       const sandbox::SandboxSpec& run);

  // The fork server's spec for a language with a [zygote].
  Result<sandbox::SandboxSpec> ZygoteSpec(const languages::Language& lang);
  // The language's zygote if this run may be forked from it: no request environment or
  // network, and rlimits within the zygote's. Null otherwise (or none is running).
  std::shared_ptr<sandbox::Zygote> ZygoteFor(const languages::Language& lang,
                                             const ExecutionRequest& req,
                                             const languages::LimitSet& limits);

  // The limits of a stage: compile (true) or run, from `requested` over config and manifest;
  // `own` (a check recipe's) over the manifest's stage defaults.
  Result<languages::LimitSet> StageLimits(const languages::Language& lang,
                                          const languages::LimitSet& requested, bool compile,
                                          const languages::LimitSet& own = {}) const;

  // A usable language by id/alias/extension and its installed version, checked against the
  // requested one. kInvalidArgument naming the field.
  Result<std::pair<const languages::Language*, std::string>> FindLanguage(
      const std::string& name, const std::string& version);

  EngineConfig config_;
  languages::Registry registry_;
  std::mutex registry_mu_;
  std::unique_ptr<sandbox::Sandbox> sandbox_;
  ArtifactCache cache_;
  // Declared last: destroyed first, before the sandbox.
  std::unique_ptr<WarmPool> warm_;
  std::unique_ptr<WarmPool> prebuilt_;  // a pool of prebuilt sandboxes (WarmPool::Options)
  std::unique_ptr<Zygotes> zygotes_;
};

// A new execution id: time-ordered, unique, URL-safe ("ex_" + 26 chars).
std::string NewExecutionId();
// The payload of an execution's first event, `queued` (seq 1).
nlohmann::json QueuedPayload(const ExecutionRequest& req, const std::string& created_at);
// RFC 3339 UTC timestamp with milliseconds for the current time.
std::string NowRfc3339();
std::string Rfc3339(std::chrono::system_clock::time_point t);

}  // namespace polyrun::engine
