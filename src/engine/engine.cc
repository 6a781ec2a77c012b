#include "engine/engine.h"

#include <signal.h>
#include <sys/random.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <set>

#include "engine/limits.h"
#include "engine/result_json.h"
#include "util/digest.h"
#include "util/files.h"
#include "util/strings.h"

namespace polyrun::engine {

namespace {

using languages::Limit;
using languages::LimitSet;
using nlohmann::json;
using sandbox::Termination;

std::string SignalName(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return abbrev ? std::string("SIG") + abbrev : "signal " + std::to_string(sig);
}

bool ValidEnvName(const std::string& k) {
  if (k.empty() || std::isdigit(static_cast<unsigned char>(k[0]))) return false;
  return std::all_of(k.begin(), k.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
}

// What a tree built ahead with the language's default limits keeps for good: its rlimits and
// the sizes of its /work and /tmp. A prebuilt tree serves a run whose limits these are; its
// clocks, output caps, memory and processes are the run's own (Sandbox::RunPrebuilt).
bool SameFixedLimits(const sandbox::SandboxLimits& built, const sandbox::SandboxLimits& wanted) {
  auto fixed = [](const sandbox::SandboxLimits& l) {
    return std::tie(l.file_size_bytes, l.open_files, l.stack_bytes, l.work_dir_bytes, l.tmp_bytes);
  };
  return fixed(built) == fixed(wanted);
}

// A warm tree's program has started under its memory and process limits too: it serves a run
// whose limits are all the same, but for its clocks and output caps.
bool SameTree(const sandbox::SandboxLimits& built, const sandbox::SandboxLimits& wanted) {
  return SameFixedLimits(built, wanted) && built.memory_bytes == wanted.memory_bytes &&
         built.processes == wanted.processes;
}

// `base` ("KEY=VALUE" entries) with `vars` set on top, each replacing an earlier KEY.
// What a warm bootstrap reads first on its stdin (languages/python/warm.py): a line with the
// header's length, the JSON header, then the files' bytes in the header's order. Nullopt when a
// name or argument is not UTF-8 (JSON cannot carry it): such a run goes cold.
std::optional<std::string> WarmHeader(const std::vector<sandbox::SandboxFile>& files,
                                      const std::string& entry,
                                      const std::vector<std::string>& args) {
  json header = {{"entry", entry}, {"args", args}, {"files", json::array()}};
  size_t bytes = 0;
  for (const auto& f : files) {
    header["files"].push_back(
        {{"name", f.name}, {"size", f.content.size()}, {"executable", f.executable}});
    bytes += f.content.size();
  }
  std::string text;
  try {
    text = header.dump(-1, ' ', false, json::error_handler_t::strict);
  } catch (const json::type_error&) {
    return std::nullopt;
  }
  std::string out = std::to_string(text.size()) + "\n" + text;
  out.reserve(out.size() + bytes);
  for (const auto& f : files) out += f.content;
  return out;
}

std::vector<std::string> WithVars(std::vector<std::string> base,
                                  const std::map<std::string, std::string>& vars) {
  for (const auto& [k, v] : vars) {
    const std::string prefix = k + "=";
    std::erase_if(base, [&](const std::string& e) { return e.starts_with(prefix); });
    base.push_back(prefix + v);
  }
  return base;
}

std::string Extension(const std::string& name) {
  auto slash = name.rfind('/');
  auto dot = name.rfind('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return "";
  return name.substr(dot + 1);
}

// Replaces {entry} and {memory_mb} (the stage's memory limit in MiB, for runtimes that size
// their heaps themselves and cannot see the cgroup) inside one token.
std::string ExpandToken(std::string t, const std::string& entry, const LimitSet& limits) {
  ReplaceAll(t, "{entry}", entry);
  ReplaceAll(t, "{memory_mb}", std::to_string(limits.Get(Limit::kMemory) >> 20));
  return t;
}

std::vector<std::string> ExpandCommand(const std::vector<std::string>& cmd,
                                       const std::string& entry,
                                       const std::vector<std::string>& sources,
                                       const std::vector<std::string>& args,
                                       const LimitSet& limits) {
  std::vector<std::string> out;
  for (const auto& token : cmd) {
    if (token == "{args}") {
      out.insert(out.end(), args.begin(), args.end());
    } else if (token == "{sources}") {
      out.insert(out.end(), sources.begin(), sources.end());
    } else {
      out.push_back(ExpandToken(token, entry, limits));
    }
  }
  return out;
}

// The recipe's env over `base`, its values expanded like command tokens.
std::vector<std::string> RecipeEnv(const std::vector<std::string>& base,
                                   const languages::Recipe& recipe, const std::string& entry,
                                   const LimitSet& limits) {
  std::map<std::string, std::string> vars;
  for (const auto& [k, v] : recipe.env) vars[k] = ExpandToken(v, entry, limits);
  return WithVars(base, vars);
}

sandbox::SandboxLimits ToSandboxLimits(const LimitSet& l) {
  sandbox::SandboxLimits s;
  s.wall_time = sandbox::Millis(static_cast<int64_t>(l.Get(Limit::kWallTime)));
  s.cpu_time = sandbox::Millis(static_cast<int64_t>(l.Get(Limit::kCpuTime)));
  s.memory_bytes = l.Get(Limit::kMemory);
  s.processes = l.Get(Limit::kProcesses);
  s.stdout_bytes = s.stderr_bytes = s.output_bytes = l.Get(Limit::kOutput);
  s.file_size_bytes = l.Get(Limit::kFileSize);
  s.open_files = l.Get(Limit::kOpenFiles);
  s.work_dir_bytes = s.tmp_bytes = l.Get(Limit::kDisk);
  s.stack_bytes = std::min<uint64_t>(8u << 20, s.memory_bytes);
  return s;
}

// How a sandbox outcome reads as a status: the status, which limit (if any) and why.
struct Verdict {
  Status status;
  std::string limit;
  std::string reason;
};

// `user_program`: argv[0] is something the user's files or compile produced (under /work), so
// a program the kernel will not execute (a Go package that is not main) is their error.
Verdict Judge(const sandbox::SandboxOutcome& o, const LimitSet& limits, bool compile,
              bool user_program = false) {
  const std::string stage = compile ? "compile stage: " : "";
  auto fmt = [&](Limit l) { return FormatOptionNumber(languages::DeclOf(l), *limits[l]); };
  switch (o.termination) {
    case Termination::kExited:
      if (o.exit_code == 0) return {Status::kOk, "", stage + "exited with status 0"};
      return {compile ? Status::kCompileError : Status::kRuntimeError, "",
              stage + "exited with status " + std::to_string(o.exit_code)};
    case Termination::kSignaled:
      return {compile ? Status::kCompileError : Status::kRuntimeError, "",
              stage + "killed by signal " + std::to_string(o.signal) + " (" + SignalName(o.signal) +
                  ")"};
    case Termination::kWallTimeout:
      return {Status::kTimeout, "wall_time",
              stage + "wall time limit of " + fmt(Limit::kWallTime) + " exceeded"};
    case Termination::kCpuTimeout:
      return {Status::kTimeout, "cpu_time",
              stage + "CPU time limit of " + fmt(Limit::kCpuTime) + " exceeded"};
    case Termination::kMemoryLimit:
      return {Status::kMemoryLimit, "memory",
              stage + "memory limit of " + fmt(Limit::kMemory) + " exceeded"};
    case Termination::kOutputLimit:
      return {Status::kOutputLimit, "output",
              stage + "output limit of " + fmt(Limit::kOutput) + " exceeded"};
    case Termination::kCancelled:
      return {Status::kCancelled, "", stage + "cancelled"};
    case Termination::kSetupFailed:
      return {Status::kInternalError, "", stage + "sandbox setup failed: " + o.setup_error};
    case Termination::kExecFailed:
      if (user_program) {
        return {Status::kRuntimeError, "",
                stage + "the compiled program cannot be executed: " + o.setup_error};
      }
      return {Status::kInternalError, "", stage + "cannot start the toolchain: " + o.setup_error};
  }
  return {Status::kInternalError, "", "unknown termination"};
}

// The request's file names are clean relative paths, each used once; "" or what is wrong.
// The files must fit the work dir: "" or why not.
std::string CheckDisk(const std::vector<RequestFile>& files, const LimitSet& limits) {
  uint64_t total = 0;
  for (const auto& f : files) total += f.content.size();
  const uint64_t disk = limits.Get(Limit::kDisk);
  if (total <= disk) return "";
  return "files: " + std::to_string(total) + " bytes do not fit the disk limit of " +
         FormatOptionNumber(languages::DeclOf(Limit::kDisk), disk);
}

std::string ValidateEnv(const std::map<std::string, std::string>& env) {
  for (const auto& [k, v] : env) {
    if (!ValidEnvName(k)) return "env: invalid variable name \"" + k + "\"";
    if (v.find('\0') != std::string::npos) return "env." + k + ": contains a NUL byte";
  }
  return "";
}

std::string ValidateFiles(const std::vector<RequestFile>& files) {
  std::set<std::string> names;
  for (size_t i = 0; i < files.size(); ++i) {
    if (auto r = sandbox::ValidateRelativePath(files[i].name); !r) {
      return "files[" + std::to_string(i) + "].name: " + r.error().message();
    }
    if (!names.insert(files[i].name).second) {
      return "files[" + std::to_string(i) + "].name: duplicate \"" + files[i].name + "\"";
    }
  }
  return "";
}

// The user's files of the recipe's languages, entry first.
std::vector<std::string> SourcesFor(const std::vector<RequestFile>& files,
                                    const std::vector<std::string>& extensions,
                                    const std::string& entry) {
  std::vector<std::string> sources;
  for (const auto& f : files) {
    if (std::find(extensions.begin(), extensions.end(), Extension(f.name)) != extensions.end())
      sources.push_back(f.name);
  }
  std::stable_partition(sources.begin(), sources.end(),
                        [&](const std::string& s) { return s == entry; });
  return sources;
}

const std::vector<std::string> kSandboxEnv = {"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/work",
                                              "TMPDIR=/tmp", "LANG=C.UTF-8", "USER=sandbox"};

// How long a language with a zygote goes without a run before its warm pool is refilled: runs
// back to back (a few ms apart) go to the zygote, a run after a pause finds a warm sandbox.
constexpr std::chrono::milliseconds kRefillWhenQuiet{100};

// The artifact cache key: everything the compiler's output depends on. Host programs named
// by absolute path (the compiler, recipe scripts) contribute their size and mtime, so a
// toolchain upgrade that keeps its version string still misses.
std::string ArtifactKey(const languages::Language& lang, const std::string& version,
                        const sandbox::SandboxSpec& spec) {
  Sha256 h;
  h.Add("polyrun-artifact-v1").Add(lang.id).Add(version).Add(languages::FolderStamp(lang));
  for (const auto& a : spec.argv) {
    h.Add(a);
    if (a.starts_with("/")) h.Add(FileStamp(languages::HostPath(lang, a)));
  }
  h.Add("env");
  for (const auto& e : spec.env) h.Add(e);
  h.Add("files");
  std::vector<const sandbox::SandboxFile*> files;
  files.reserve(spec.files.size());
  for (const auto& f : spec.files) files.push_back(&f);
  std::sort(files.begin(), files.end(), [](auto* a, auto* b) { return a->name < b->name; });
  for (const auto* f : files) h.Add(f->name).Add(f->content);
  h.Add("artifacts");
  for (const auto& a : spec.collect) h.Add(a);
  return h.HexDigest();
}

bool KilledByUs(Termination t) {
  return t == Termination::kWallTimeout || t == Termination::kCpuTimeout ||
         t == Termination::kMemoryLimit || t == Termination::kOutputLimit ||
         t == Termination::kCancelled;
}

}  // namespace

std::string NewExecutionId() {
  static constexpr char kAlphabet[] = "0123456789abcdefghjkmnpqrstvwxyz";  // Crockford base32
  uint64_t ms = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                          std::chrono::system_clock::now().time_since_epoch())
                                          .count());
  unsigned char rnd[10];
  if (::getrandom(rnd, sizeof rnd, 0) != sizeof rnd) {
    throw std::runtime_error("getrandom failed");  // broken invariant: the kernel has entropy
  }
  std::string out = "ex_";
  for (int i = 9; i >= 0; --i) out += kAlphabet[(ms >> (i * 5)) & 31];  // 50 bits of time
  uint64_t hi = 0, lo = 0;
  std::memcpy(&hi, rnd, 8);
  std::memcpy(&lo, rnd + 8, 2);
  for (int i = 0; i < 12; ++i) out += kAlphabet[(hi >> (i * 5)) & 31];
  for (int i = 0; i < 3; ++i) out += kAlphabet[(lo >> (i * 5)) & 31];
  out += kAlphabet[(hi >> 60) & 15];
  return out;
}

json QueuedPayload(const ExecutionRequest& req, const std::string& created_at) {
  json p = {{"language", req.language}, {"labels", req.labels}, {"created_at", created_at}};
  if (!req.session_id.empty()) p["session_id"] = req.session_id;
  return p;
}

std::string NowRfc3339() {
  return Rfc3339(std::chrono::system_clock::now());
}

std::string Rfc3339(std::chrono::system_clock::time_point now) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  time_t secs = static_cast<time_t>(ms / 1000);
  tm t{};
  gmtime_r(&secs, &t);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", t.tm_year + 1900,
                t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec,
                static_cast<int>(ms % 1000));
  return buf;
}

Result<std::unique_ptr<Engine>> Engine::Create(const EngineConfig& config, const Options& options) {
  auto registry = options.only_language.empty()
                      ? languages::Registry::Load(config.languages_dir, options.check_patterns)
                      : languages::Registry::LoadFor(config.languages_dir, options.only_language,
                                                     config.cache_dir, options.check_patterns);
  if (!registry) return std::unexpected(registry.error());
  auto cgroups = sandbox::DetectCgroups(config.cgroup_root);
  if (!cgroups) {
    Error e = cgroups.error();
    e.context = "cannot sandbox on this host: " + e.context + " (run `polyrun doctor`)";
    return std::unexpected(e);
  }
  sandbox::SandboxConfig sc;
  sc.cgroups = std::move(*cgroups);
  if (config.sandbox_uid >= 0) sc.host_uid = static_cast<uid_t>(config.sandbox_uid);
  if (config.sandbox_gid >= 0) sc.host_gid = static_cast<gid_t>(config.sandbox_gid);
  sc.netns_ready = options.netns_ready;
  auto sb = sandbox::Sandbox::Create(std::move(sc));
  if (!sb) return std::unexpected(sb.error());
  auto cache = ArtifactCache::Open(config.cache_dir.empty() ? "" : config.cache_dir + "/artifacts",
                                   config.artifact_cache_bytes);
  if (!cache) return std::unexpected(cache.error());
  return std::make_unique<Engine>(config, std::move(*registry), std::move(*sb), std::move(*cache));
}

Engine::Engine(EngineConfig config, languages::Registry registry,
               std::unique_ptr<sandbox::Sandbox> sb, ArtifactCache cache)
    : config_(std::move(config)),
      registry_(std::move(registry)),
      sandbox_(std::move(sb)),
      cache_(std::move(cache)) {}

std::string Engine::VersionOf(const std::string& id) {
  std::lock_guard lock(registry_mu_);
  return registry_.VersionOf(id, config_.cache_dir);
}

Result<LimitSet> Engine::StageLimits(const languages::Language& lang, const LimitSet& requested,
                                     bool compile, const LimitSet& own) const {
  auto override_of = [&](const std::map<std::string, LimitSet>& m) {
    auto it = m.find(lang.id);
    return it == m.end() ? LimitSet{} : it->second;
  };
  // `own` (a check recipe's limits) goes over the stage's manifest defaults.
  if (!compile) {
    return ResolveLimits({requested, override_of(config_.language_limits),
                          own.Over(lang.run.limits), config_.limits, config_.ceiling});
  }
  return ResolveLimits({requested, override_of(config_.language_compile_limits),
                        own.Over(lang.compile ? lang.compile->limits : LimitSet{}),
                        config_.compile_limits.Over(config_.limits), config_.ceiling});
}

Result<std::pair<const languages::Language*, std::string>> Engine::FindLanguage(
    const std::string& name, const std::string& version) {
  if (name.empty()) return Fail(Errc::kInvalidArgument, "language: required");
  const languages::LanguageEntry* entry = nullptr;
  {
    std::lock_guard lock(registry_mu_);
    entry = registry_.Find(name);
  }
  if (entry == nullptr) {
    std::string known;
    for (const auto& e : registry_.entries()) known += (known.empty() ? "" : ", ") + e.id;
    return Fail(Errc::kInvalidArgument,
                "language: unknown language \"" + name + "\" (known: " + known + ")");
  }
  if (!entry->usable || !entry->language) {
    return Fail(Errc::kInvalidArgument,
                "language: " + entry->id + " is not usable on this host: " + entry->problem);
  }
  std::string installed = VersionOf(entry->id);
  if (!version.empty() && version != "*" && !installed.starts_with(version)) {
    return Fail(Errc::kInvalidArgument, "version: " + entry->id + " " + version +
                                            " is not installed (installed: " + installed + ")");
  }
  return std::pair{&*entry->language, std::move(installed)};
}

Result<SessionLaunch> Engine::PrepareSession(const SessionRequest& req,
                                             std::chrono::milliseconds lifetime) {
  auto found = FindLanguage(req.language, req.version);
  if (!found) return std::unexpected(found.error());
  const languages::Language& lang = *found->first;
  if (!lang.session) {
    return Fail(Errc::kInvalidArgument,
                "language: " + lang.id + " has no session driver (sessions: no)");
  }
  if (req.network) {
    return Fail(Errc::kInvalidArgument, "network: network access is not enabled on this server");
  }
  if (auto bad = ValidateFiles(req.files); !bad.empty()) return Fail(Errc::kInvalidArgument, bad);
  if (auto bad = ValidateEnv(req.env); !bad.empty()) return Fail(Errc::kInvalidArgument, bad);
  auto limits = StageLimits(lang, req.limits, false);
  if (!limits) return Fail(Errc::kInvalidArgument, limits.error().message());
  if (auto bad = CheckDisk(req.files, *limits); !bad.empty()) {
    return Fail(Errc::kInvalidArgument, bad);
  }
  SessionLaunch launch;
  launch.language = lang.id;
  launch.version = found->second;
  launch.limits = *limits;
  launch.labels = req.labels;
  const languages::Recipe& recipe = *lang.session;
  sandbox::SandboxSpec& spec = launch.spec;
  spec.argv = ExpandCommand(recipe.command, lang.entry, {}, {}, *limits);
  spec.env = WithVars(RecipeEnv(kSandboxEnv, recipe, lang.entry, *limits), req.env);
  spec.binds = languages::BindsFor(lang, recipe);
  for (const auto& f : req.files) spec.files.push_back({f.name, f.content, false});
  spec.extra_syscalls = lang.syscalls;
  spec.limits = ToSandboxLimits(*limits);
  // The sandbox's own clocks bound the whole session; executions have their own limits.
  spec.limits.wall_time = lifetime;
  spec.limits.cpu_time = lifetime;
  return launch;
}

// Each run's clocks are its own, and so is its program's CPU rlimit, the second fence behind the
// cgroup's accounting: the tree's starts at the largest limit a run may ask for, and each run
// lowers its program's to its own (Sandbox::Claim, RunPrebuilt, the zygote): a hard limit can
// be lowered, never raised.
Result<sandbox::SandboxSpec> Engine::AheadSpec(const languages::Language& lang,
                                               const languages::Recipe& recipe, bool with_program) {
  auto limits = StageLimits(lang, {}, false);
  if (!limits) return std::unexpected(limits.error());
  sandbox::SandboxSpec spec;
  if (with_program) {
    spec.argv = ExpandCommand(recipe.command, lang.entry, {}, {}, *limits);
    spec.env = RecipeEnv(kSandboxEnv, lang.run, lang.entry, *limits);
  }
  spec.binds = languages::BindsFor(lang, recipe);
  spec.extra_syscalls = lang.syscalls;
  spec.limits = ToSandboxLimits(*limits);
  const auto ceiling = config_.ceiling[Limit::kCpuTime];
  spec.limits.cpu_time = std::chrono::milliseconds(ceiling ? *ceiling : 3'600'000);
  return spec;
}

Result<sandbox::SandboxSpec> Engine::WarmSpec(const languages::Language& lang) {
  if (!lang.warm) return Fail(Errc::kInvalidArgument, "language: " + lang.id + " has no [warm]");
  auto spec = AheadSpec(lang, *lang.warm, true);
  if (spec) spec->frames_channel = true;  // the bootstrap's 'R': ready
  return spec;
}

Result<sandbox::SandboxSpec> Engine::ZygoteSpec(const languages::Language& lang) {
  if (!lang.zygote) {
    return Fail(Errc::kInvalidArgument, "language: " + lang.id + " has no [zygote]");
  }
  return AheadSpec(lang, *lang.zygote, true);
}

std::shared_ptr<sandbox::Zygote> Engine::ZygoteFor(const languages::Language& lang,
                                                   const ExecutionRequest& req,
                                                   const LimitSet& limits) {
  if (!zygotes_ || !zygotes_->Serves(lang.id)) return nullptr;
  // As for warm pools: the server started with [run]'s environment, and without a network.
  if (!req.env.empty() || req.network) return nullptr;
  auto zygote = zygotes_->Get(lang.id);
  return zygote && zygote->CanServe(ToSandboxLimits(limits)) ? zygote : nullptr;
}

std::map<std::string, Zygotes::Stats> Engine::ZygoteStats() {
  return zygotes_ ? zygotes_->stats() : std::map<std::string, Zygotes::Stats>{};
}

void Engine::StartWarmPools() {
  if (config_.zygotes && !zygotes_) {
    std::map<std::string, sandbox::SandboxSpec> specs;
    std::lock_guard lock(registry_mu_);
    for (const auto& entry : registry_.entries()) {
      const languages::Language* lang = entry.language.get();
      if (!entry.usable || lang == nullptr || !lang->zygote || lang->compile) continue;
      if (auto spec = ZygoteSpec(*lang); spec) specs.emplace(lang->id, std::move(*spec));
    }
    if (!specs.empty()) zygotes_ = std::make_unique<Zygotes>(*sandbox_, std::move(specs));
  }
  if (!warm_ && config_.warm_pool_size > 0) {
    std::map<std::string, sandbox::SandboxSpec> specs;
    std::lock_guard lock(registry_mu_);
    for (const auto& entry : registry_.entries()) {
      const languages::Language* lang = entry.language.get();
      if (!entry.usable || lang == nullptr || !lang->warm) continue;
      if (auto spec = WarmSpec(*lang); spec) specs.emplace(lang->id, std::move(*spec));
    }
    WarmPool::Options options;
    options.max_per_language = config_.warm_pool_size;
    options.memory_budget = config_.warm_pool_memory;
    // A language with a zygote has a path for sustained demand; its pool serves runs that come
    // after a pause (Options::refill_when_quiet).
    for (const auto& [id, spec] : specs) {
      if (zygotes_ && zygotes_->Serves(id)) options.refill_when_quiet[id] = kRefillWhenQuiet;
    }
    warm_ = std::make_unique<WarmPool>(*sandbox_, std::move(specs), options);
  }
  if (!prebuilt_ && config_.prebuilt_sandboxes > 0) {
    std::map<std::string, sandbox::SandboxSpec> specs;
    std::lock_guard lock(registry_mu_);
    for (const auto& entry : registry_.entries()) {
      const languages::Language* lang = entry.language.get();
      if (!entry.usable || lang == nullptr) continue;
      if (auto spec = AheadSpec(*lang, lang->run, false)) specs.emplace(lang->id, std::move(*spec));
    }
    WarmPool::Options options;
    options.max_per_language = config_.prebuilt_sandboxes;
    options.memory_budget = config_.warm_pool_memory;
    options.prebuilt = true;
    // A refill (a clone of this process and a sandbox's setup, ~2 ms of CPU) beside a run that
    // just took the last one slowed that run's interpreter start by 0.5-1 ms on two cores; an
    // interpreter starts within this, so the refill comes after it (or at the run's end).
    options.empty_refill_grace = std::chrono::milliseconds(100);
    prebuilt_ = std::make_unique<WarmPool>(*sandbox_, std::move(specs), options);
  }
}

std::map<std::string, WarmPool::Stats> Engine::WarmPoolStats() {
  return warm_ ? warm_->stats() : std::map<std::string, WarmPool::Stats>{};
}

std::map<std::string, WarmPool::Stats> Engine::PrebuiltStats() {
  return prebuilt_ ? prebuilt_->stats() : std::map<std::string, WarmPool::Stats>{};
}

std::optional<sandbox::PreparedSandbox> Engine::TakePrebuilt(const languages::Language& lang,
                                                             const ExecutionRequest& req,
                                                             const LimitSet& limits,
                                                             const sandbox::SandboxSpec& run) {
  if (!prebuilt_ || !prebuilt_->Serves(lang.id) || req.network) return std::nullopt;
  if (!SameFixedLimits(prebuilt_->SpecOf(lang.id)->limits, ToSandboxLimits(limits))) {
    return std::nullopt;
  }
  if (!sandbox::Sandbox::PrebuiltServes(run)) return std::nullopt;  // e.g. an oversized file
  return prebuilt_->Take(lang.id);
}

std::optional<sandbox::PreparedSandbox> Engine::TakeWarm(const languages::Language& lang,
                                                         const ExecutionRequest& req,
                                                         const LimitSet& limits) {
  if (!warm_ || !warm_->Serves(lang.id)) return std::nullopt;
  // The bootstrap starts with [run]'s environment: variables the interpreter reads at start-up
  // (PYTHONPATH, NODE_OPTIONS…) could not take effect later.
  if (!req.env.empty() || req.network) return std::nullopt;
  if (!SameTree(warm_->SpecOf(lang.id)->limits, ToSandboxLimits(limits))) return std::nullopt;
  return warm_->Take(lang.id);
}

CheckReport Engine::Check(const CheckRequest& req) {
  CheckReport report;
  if (req.files.empty()) {
    report.rejected = "files: required";
    return report;
  }
  if (auto bad = ValidateFiles(req.files); !bad.empty()) {
    report.rejected = bad;
    return report;
  }
  std::vector<std::string> targets = req.targets;
  if (targets.empty()) {
    for (const auto& f : req.files) targets.push_back(f.name);
  }
  const languages::LanguageEntry* forced = nullptr;
  if (!req.language.empty()) {
    std::lock_guard lock(registry_mu_);
    forced = registry_.Find(req.language);
    if (forced == nullptr) {
      report.rejected = "language: unknown language \"" + req.language + "\"";
      return report;
    }
  }
  std::vector<sandbox::SandboxFile> sandbox_files;
  sandbox_files.reserve(req.files.size());
  for (const auto& f : req.files) sandbox_files.push_back({f.name, f.content, false});

  // One target: its language, then its recipe's findings, or why it could not be checked.
  auto check_one = [&](const RequestFile& file) {
    languages::FileCheck fc;
    fc.file = file.name;
    languages::Detection d{forced, "request"};
    if (forced == nullptr) {
      std::lock_guard lock(registry_mu_);
      d = languages::DetectLanguage(registry_, file.name, file.content);
    }
    if (d.entry == nullptr) {
      fc.problem =
          "language: cannot tell the language (no known extension, shebang or content "
          "pattern); name it with --language";
      return fc;
    }
    fc.language = d.entry->id;
    fc.detected_by = d.how;
    if (!d.entry->usable || !d.entry->language) {
      fc.problem = d.entry->id + " is not usable on this host: " + d.entry->problem;
      return fc;
    }
    const languages::Language& lang = *d.entry->language;
    if (!lang.check) {
      fc.problem = lang.id + " has no analyzer ([check] in its manifest)";
      return fc;
    }
    auto limits = StageLimits(lang, {}, lang.compile.has_value(), lang.check->limits);
    if (!limits) {
      fc.problem = limits.error().message();
      return fc;
    }
    sandbox::SandboxSpec spec;
    spec.binds = languages::BindsFor(lang, *lang.check);
    spec.argv = ExpandCommand(lang.check->command, file.name,
                              SourcesFor(req.files, lang.extensions, file.name), {}, *limits);
    spec.env = RecipeEnv(kSandboxEnv, *lang.check, file.name, *limits);
    spec.files = sandbox_files;
    spec.extra_syscalls = lang.syscalls;
    spec.limits = ToSandboxLimits(*limits);
    auto outcome = sandbox_->Run(spec);
    if (!outcome) {
      fc.problem = "check: " + outcome.error().message();
      return fc;
    }
    size_t records = languages::ParseCheckOutput(outcome->stdout_data, fc);
    if (outcome->termination != Termination::kExited || (outcome->exit_code != 0 && records == 0)) {
      std::string detail(Trim(outcome->stderr_data.substr(0, 500)));
      fc.problem = "check recipe failed: " + Judge(*outcome, *limits, false).reason +
                   (detail.empty() ? "" : ": " + detail);
    }
    return fc;
  };

  std::vector<const RequestFile*> files;
  files.reserve(targets.size());
  for (size_t t = 0; t < targets.size(); ++t) {
    auto file = std::find_if(req.files.begin(), req.files.end(),
                             [&](const auto& f) { return f.name == targets[t]; });
    if (file == req.files.end()) {
      report.rejected =
          "targets[" + std::to_string(t) + "]: \"" + targets[t] + "\" is not among the files";
      return report;
    }
    files.push_back(&*file);
  }
  for (const RequestFile* file : files) report.files.push_back(check_one(*file));
  return report;
}

ExecutionResult Engine::Run(const ExecutionRequest& req, const EventSink& sink) {
  const bool admitted = !req.id.empty();
  EventRecorder rec(admitted ? req.id : NewExecutionId(), sink,
                    admitted ? req.queued_at : std::chrono::steady_clock::now());
  rec.Emit(Event::Kind::kQueued, QueuedPayload(req, admitted ? req.created_at : NowRfc3339()));
  auto finish = [&](Status status, std::string reason, json extra = json::object()) {
    extra["status"] = StatusName(status);
    extra["reason"] = std::move(reason);
    extra["finished_at"] = NowRfc3339();
    rec.Emit(Event::Kind::kFinished, std::move(extra));
    return rec.Result();
  };
  auto reject = [&](std::string reason) { return finish(Status::kRejected, std::move(reason)); };

  // ---- validation -----------------------------------------------------------------------
  auto found = FindLanguage(req.language, req.version);
  if (!found) return reject(found.error().message());
  const languages::Language& lang = *found->first;
  const std::string& version = found->second;

  if (!req.code.empty() && !req.files.empty())
    return reject("code, files: give one or the other, not both");
  std::vector<RequestFile> files = req.files;
  if (files.empty()) {
    if (req.code.empty()) return reject("code: required (or files)");
    files.push_back({lang.entry, req.code});
  }
  std::string entry_name = req.entry.empty() ? files.front().name : req.entry;
  if (auto bad = ValidateFiles(files); !bad.empty()) return reject(bad);
  if (std::none_of(files.begin(), files.end(), [&](const auto& f) { return f.name == entry_name; }))
    return reject("entry: \"" + entry_name + "\" is not among the files");
  if (auto bad = ValidateEnv(req.env); !bad.empty()) return reject(bad);
  for (size_t i = 0; i < req.args.size(); ++i) {
    if (req.args[i].find('\0') != std::string::npos) {
      return reject("args[" + std::to_string(i) + "]: contains a NUL byte");
    }
  }
  if (req.network) return reject("network: network access is not enabled on this server");

  auto limits = StageLimits(lang, req.limits, false);
  if (!limits) return reject(limits.error().message());
  if (auto bad = CheckDisk(files, *limits); !bad.empty()) return reject(bad);
  LimitSet compile_limits;
  if (lang.compile) {
    auto cl = StageLimits(lang, req.compile_limits, true);
    if (!cl) return reject("compile_" + cl.error().message());
    compile_limits = *cl;
  }

  rec.Emit(Event::Kind::kStarted,
           {{"started_at", NowRfc3339()},
            {"limits", LimitsToJson(*limits)},
            {"compile_limits", lang.compile ? LimitsToJson(compile_limits) : json(nullptr)},
            {"version", version}});

  json final_extra = {
      {"language", lang.id}, {"version", version}, {"limits", LimitsToJson(*limits)}};

  std::vector<sandbox::SandboxFile> sandbox_files;
  sandbox_files.reserve(files.size() + 1);
  for (const auto& f : files) sandbox_files.push_back({f.name, f.content, false});

  // ---- compile --------------------------------------------------------------------------
  if (lang.compile) {
    const auto& recipe = *lang.compile;
    rec.Emit(Event::Kind::kCompileStarted);
    std::vector<std::string> sources = SourcesFor(files, recipe.source_extensions, entry_name);
    sandbox::SandboxSpec spec;
    spec.argv = ExpandCommand(recipe.command, entry_name, sources, {}, compile_limits);
    spec.env = RecipeEnv(kSandboxEnv, recipe, entry_name, compile_limits);
    spec.binds = languages::BindsFor(lang, recipe);
    spec.files = sandbox_files;
    spec.collect = recipe.artifacts;
    spec.extra_syscalls = lang.syscalls;
    spec.limits = ToSandboxLimits(compile_limits);
    spec.cancel_fd = req.cancel_fd;
    spec.on_output = [&](sandbox::Stream s, std::string_view chunk) {
      rec.Emit(Event::Kind::kCompileOutput, nullptr, std::string(chunk),
               s == sandbox::Stream::kStdout ? "stdout" : "stderr");
    };
    const std::string cache_key = cache_.enabled() ? ArtifactKey(lang, version, spec) : "";
    ArtifactCache::Artifacts artifacts;
    if (auto hit = cache_key.empty() ? std::nullopt : cache_.Lookup(cache_key);
        hit && std::all_of(recipe.artifacts.begin(), recipe.artifacts.end(),
                           [&](const auto& a) { return hit->contains(a); })) {
      StageResult stage;
      stage.exit_code = 0;
      stage.cached = true;
      rec.Emit(Event::Kind::kCompileFinished, ToJson(stage));
      artifacts = std::move(*hit);
    } else {
      auto outcome = sandbox_->Run(spec);
      if (!outcome) {
        rec.Emit(Event::Kind::kCompileFinished, {{"status", "internal_error"}});
        return finish(Status::kInternalError, "compile stage: " + outcome.error().message(),
                      final_extra);
      }
      Verdict v = Judge(*outcome, compile_limits, true);
      StageResult stage;
      stage.status = v.status;
      if (outcome->termination == Termination::kExited) stage.exit_code = outcome->exit_code;
      stage.signal = outcome->signal;
      stage.stdout_truncated = outcome->stdout_truncated;
      stage.stderr_truncated = outcome->stderr_truncated;
      stage.usage = {static_cast<uint64_t>(outcome->wall.count()),
                     static_cast<uint64_t>(outcome->cpu.count()), outcome->memory_peak_bytes,
                     "cold"};
      stage.diagnostics = languages::ParseDiagnostics(
          lang.errors, outcome->stderr_data + "\n" + outcome->stdout_data);
      if (v.status == Status::kOk) {
        for (const auto& a : recipe.artifacts) {
          if (!outcome->artifacts.contains(a)) {
            v = {Status::kInternalError, "",
                 "compile stage: the compiler succeeded but produced no " + a};
            stage.status = v.status;
          }
        }
      }
      rec.Emit(Event::Kind::kCompileFinished, ToJson(stage));
      if (v.status != Status::kOk) {
        final_extra["limit"] = v.limit;
        if (v.status == Status::kCompileError) {
          auto first = std::find_if(stage.diagnostics.begin(), stage.diagnostics.end(),
                                    [](const auto& d) { return d.severity == "error"; });
          languages::ErrorInfo err;
          err.type = "compile";
          err.name = "CompileError";
          if (first != stage.diagnostics.end()) {
            err.message = first->message;
            err.file = first->file;
            err.line = first->line;
            err.column = first->column;
          } else {
            err.message = v.reason;
          }
          final_extra["error"] = ToJson(err);
          v.reason =
              "compilation failed" +
              (first != stage.diagnostics.end()
                   ? ": " + first->file + ":" + std::to_string(first->line) + ": " + first->message
                   : "");
        }
        final_extra["usage"] = ToJson(stage.usage);
        return finish(v.status, v.reason, final_extra);
      }
      for (const auto& a : recipe.artifacts) artifacts[a] = std::move(outcome->artifacts[a]);
      if (!cache_key.empty()) {
        // A cache: a failed store only costs the next identical run a compile.
        [[maybe_unused]] auto stored = cache_.Store(cache_key, artifacts);
      }
    }
    for (auto& [name, bytes] : artifacts) {
      std::erase_if(sandbox_files, [&](const auto& f) { return f.name == name; });
      sandbox_files.push_back({name, std::move(bytes), true});
    }
  }

  // ---- run ------------------------------------------------------------------------------
  sandbox::SandboxSpec spec;
  spec.argv = ExpandCommand(lang.run.command, entry_name, {}, req.args, *limits);
  spec.env = WithVars(RecipeEnv(kSandboxEnv, lang.run, entry_name, *limits), req.env);
  spec.binds = languages::BindsFor(lang, lang.run);
  spec.files = std::move(sandbox_files);
  spec.stdin_data = req.stdin_data;
  spec.stdin_fd = req.stdin_fd;
  spec.extra_syscalls = lang.syscalls;
  spec.limits = ToSandboxLimits(*limits);
  spec.cancel_fd = req.cancel_fd;
  spec.on_output = [&](sandbox::Stream s, std::string_view chunk) {
    rec.Emit(s == sandbox::Stream::kStdout ? Event::Kind::kStdout : Event::Kind::kStderr, nullptr,
             std::string(chunk));
  };
  std::optional<std::string> header;
  // A compiled language's warm sandbox runs its run stage: the compiler's output is among the
  // files. Zygotes serve interpreted languages only.
  if ((lang.warm && warm_) || (!lang.compile && lang.zygote && zygotes_)) {
    header = WarmHeader(spec.files, entry_name, req.args);
  }
  // A warm sandbox that is ready first (the shortest path: its interpreter is loaded and its
  // bootstrap answers before its own exit), then the zygote (which also serves runs with limits
  // of their own, and keeps serving when demand outruns the pools' refill), else cold.
  std::optional<Result<sandbox::SandboxOutcome>> ran;
  const char* mode = "cold";
  if (header) {
    // A zygote's run and a warm bootstrap read the run (header, files) from stdin, then the
    // program its own stdin.
    spec.stdin_data = std::move(*header) + req.stdin_data;
    if (lang.warm) {
      if (auto warm = TakeWarm(lang, req, *limits)) {
        ran = sandbox_->Claim(std::move(*warm), spec);
        warm_->RunEnded(lang.id);
        mode = "warm";
      }
    }
    if (!ran) {
      if (auto zygote = ZygoteFor(lang, req, *limits)) {
        auto forked = sandbox_->RunInZygote(*zygote, spec);
        if (forked || forked.error().code != Errc::kUnavailable) {
          ran = std::move(forked);
          mode = "zygote";
        } else {
          zygotes_->Broken(lang.id, zygote);  // replaced; this run goes on without it
        }
      }
    }
    if (!ran) spec.stdin_data = req.stdin_data;
  }
  if (!ran) {
    if (auto prebuilt = TakePrebuilt(lang, req, *limits, spec)) {
      ran = sandbox_->RunPrebuilt(std::move(*prebuilt), spec);
      prebuilt_->RunEnded(lang.id);
      mode = "prebuilt";
    }
  }
  if (!ran) ran = sandbox_->Run(spec);
  const Result<sandbox::SandboxOutcome>& outcome = *ran;
  if (!outcome) return finish(Status::kInternalError, outcome.error().message(), final_extra);
  Verdict v = Judge(*outcome, *limits, false, spec.argv[0].starts_with("/work/"));
  final_extra["limit"] = v.limit;
  final_extra["usage"] =
      ToJson(Usage{static_cast<uint64_t>(outcome->wall.count()),
                   static_cast<uint64_t>(outcome->cpu.count()), outcome->memory_peak_bytes, mode});
  final_extra["truncated"] = {{"stdout", outcome->stdout_truncated},
                              {"stderr", outcome->stderr_truncated}};
  if (outcome->termination == Termination::kExited) final_extra["exit_code"] = outcome->exit_code;
  if (outcome->termination == Termination::kSignaled) final_extra["signal"] = outcome->signal;
  if (KilledByUs(outcome->termination)) final_extra["signal"] = SIGKILL;
  if (v.status == Status::kRuntimeError) {
    std::optional<languages::ErrorInfo> err;
    if (outcome->termination == Termination::kExecFailed) {
      err = languages::ErrorInfo{
          "exit", "ExecError", outcome->setup_error + " (did the program define an entry point?)",
          "",     0,           0,
          {}};
    } else {
      err = languages::ParseRuntimeError(lang.errors, outcome->stderr_data);
    }
    if (!err && outcome->signal != 0) {
      err = languages::ErrorInfo{
          "signal", SignalName(outcome->signal), strsignal(outcome->signal), "", 0, 0, {}};
    }
    if (!err) {
      err = languages::ErrorInfo{"exit",
                                 "NonZeroExit",
                                 "exited with status " + std::to_string(outcome->exit_code),
                                 "",
                                 0,
                                 0,
                                 {}};
    }
    if (outcome->signal != 0 && err->type == "exception" && err->name == "Error" &&
        err->line == 0) {
      err = languages::ErrorInfo{
          "signal", SignalName(outcome->signal), strsignal(outcome->signal), "", 0, 0, {}};
    }
    // Tools that report a line but never a file (sqlite3) mean the entry file.
    if (err->line > 0 && err->file.empty()) err->file = entry_name;
    final_extra["error"] = ToJson(*err);
  }
  return finish(v.status, v.reason, final_extra);
}

}  // namespace polyrun::engine
