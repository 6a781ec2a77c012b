#include "escape.h"

#include <dirent.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>
#include <toml.hpp>

#include "sandbox/cgroup.h"
#include "util/base64.h"

namespace polyrun::escape {

namespace {

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

bool ParseProc(pid_t pid, ProcEntry& out) {
  const std::string dir = "/proc/" + std::to_string(pid);
  std::string status = Slurp(dir + "/status");
  std::string stat = Slurp(dir + "/stat");
  if (status.empty() || stat.empty()) return false;
  out.pid = pid;
  std::istringstream lines(status);
  bool have_uid = false, have_ppid = false;
  for (std::string line; std::getline(lines, line);) {
    // SIGKILL pending for the thread or the whole process: it never returns to user mode.
    if (line.starts_with("SigPnd:") || line.starts_with("ShdPnd:")) {
      out.dying = out.dying || (std::stoull(line.substr(7), nullptr, 16) & (1ull << (SIGKILL - 1)));
    }
    if (line.starts_with("Name:")) {
      out.name = line.substr(5);
      out.name.erase(0, out.name.find_first_not_of(" \t"));
    } else if (line.starts_with("Uid:")) {
      out.uid = static_cast<uid_t>(std::stoul(line.substr(4)));  // real uid
      have_uid = true;
    } else if (line.starts_with("PPid:")) {
      out.ppid = static_cast<pid_t>(std::stol(line.substr(5)));
      have_ppid = true;
    }
  }
  // The state is field 3, the flags 9 (PF_EXITING 0x4), starttime 22; fields after the command
  // name (which may hold spaces) start at 3.
  auto close = stat.rfind(')');
  if (close == std::string::npos) return false;
  std::istringstream fields(stat.substr(close + 2));
  std::string field;
  for (int i = 3; i <= 22 && fields >> field; ++i) {
    if (i == 3) out.dying = out.dying || field == "Z" || field == "X";
    if (i == 9) out.dying = out.dying || (std::stoul(field) & 0x4) != 0;
    if (i == 22) out.start = std::stoull(field);
  }
  return have_uid && have_ppid && out.start != 0;
}

std::set<std::pair<pid_t, unsigned long long>> SandboxUidSnapshot() {
  std::set<std::pair<pid_t, unsigned long long>> out;
  for (const auto& p : ListProcesses()) {
    if (p.uid == kSandboxHostUid) out.emplace(p.pid, p.start);
  }
  return out;
}

// Ends and reaps what LeakedSandboxProcesses found, so one failing test does not poison the
// next. Only processes that are ours: listed as leaked, and children of ours when reaping.
void KillLeaked(const std::vector<std::string>& leaked) {
  for (const auto& line : leaked) {
    pid_t pid = static_cast<pid_t>(std::stol(line));
    if (pid > 1) ::kill(pid, SIGKILL);
  }
  while (::waitpid(-1, nullptr, WNOHANG) > 0) {
  }
}

}  // namespace

std::vector<ProcEntry> ListProcesses() {
  std::vector<ProcEntry> out;
  DIR* d = ::opendir("/proc");
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (*end != '\0' || pid <= 0) continue;
    ProcEntry p;
    if (ParseProc(static_cast<pid_t>(pid), p)) out.push_back(p);
  }
  ::closedir(d);
  return out;
}

std::vector<std::string> LeakedSandboxProcesses(
    const std::set<std::pair<pid_t, unsigned long long>>& before) {
  const auto procs = ListProcesses();
  std::map<pid_t, const ProcEntry*> by_pid;
  for (const auto& p : procs) by_pid[p.pid] = &p;
  const pid_t self = ::getpid();
  std::vector<std::string> leaked;
  for (const auto& p : procs) {
    if (p.uid != kSandboxHostUid || before.contains({p.pid, p.start})) continue;
    // Walk up: reaching us means ours; reaching init through sandbox-uid processes only means
    // an orphan that escaped its run; any other owner is someone else's live supervisor.
    bool ours = false;
    pid_t cur = p.ppid;
    for (int depth = 0; depth < 4096; ++depth) {
      if (cur == self || cur <= 1) {
        ours = true;
        break;
      }
      auto it = by_pid.find(cur);
      if (it == by_pid.end() || it->second->uid != kSandboxHostUid) break;
      cur = it->second->ppid;
    }
    if (ours) leaked.push_back(std::to_string(p.pid) + " " + p.name);
  }
  return leaked;
}

namespace {

// Our descendants with the sandbox's host uid right now.
std::vector<ProcEntry> SandboxDescendants() {
  const auto procs = ListProcesses();
  std::map<pid_t, pid_t> parent;
  for (const auto& p : procs) parent[p.pid] = p.ppid;
  const pid_t self = ::getpid();
  std::vector<ProcEntry> out;
  for (const auto& p : procs) {
    if (p.uid != kSandboxHostUid) continue;
    for (pid_t cur = p.ppid; cur > 1; cur = parent.contains(cur) ? parent[cur] : 0) {
      if (cur == self) {
        out.push_back(p);
        break;
      }
    }
  }
  return out;
}

}  // namespace

int LiveSandboxDescendants() {
  return static_cast<int>(SandboxDescendants().size());
}

std::vector<std::string> RunnableSandboxDescendants() {
  std::vector<std::string> out;
  for (const auto& p : SandboxDescendants()) {
    if (!p.dying) out.push_back(std::to_string(p.pid) + " " + p.name);
  }
  return out;
}

std::vector<std::string> PolyrunCgroupDirs() {
  auto mgr = sandbox::DetectCgroups();
  if (!mgr) return {};
  // "cgroup v1 (memory: A, pids: B, cpuacct: C)" or "cgroup v2 (BASE)"
  const std::string text = (*mgr)->Describe();
  static const std::regex path(R"((/[^,()\s]+))");
  std::vector<std::string> dirs;
  for (std::sregex_iterator it(text.begin(), text.end(), path), end; it != end; ++it) {
    dirs.push_back((*it)[1]);
  }
  return dirs;
}

std::vector<std::string> OurRunCgroups() {
  const std::string prefix = "run-" + std::to_string(::getpid()) + "-";
  std::vector<std::string> out;
  for (const auto& dir : PolyrunCgroupDirs()) {
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
      if (e.path().filename().string().starts_with(prefix)) out.push_back(e.path().string());
    }
  }
  return out;
}

uint64_t SelfStatusKb(const std::string& key) {
  std::istringstream lines(Slurp("/proc/self/status"));
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with(key + ":")) return std::stoull(line.substr(key.size() + 1));
  }
  return 0;
}

uint64_t MeminfoKb(const std::string& key) {
  std::istringstream lines(Slurp("/proc/meminfo"));
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with(key + ":")) return std::stoull(line.substr(key.size() + 1));
  }
  return 0;
}

std::map<std::string, std::string> ParsePairs(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream words(text);
  for (std::string w; words >> w;) {
    auto eq = w.find('=');
    if (eq != std::string::npos) out[w.substr(0, eq)] = w.substr(eq + 1);
  }
  return out;
}

std::string Program(const std::string& name) {
  std::string text = Slurp(std::string(POLYRUN_ESCAPE_PROGRAMS_DIR) + "/" + name);
  if (text.empty()) ADD_FAILURE() << "cannot read program " << name;
  return text;
}

std::string Describe(const engine::ExecutionResult& r) {
  std::ostringstream s;
  s << "status=" << engine::StatusName(r.status) << " limit=" << r.limit << " reason=\"" << r.reason
    << "\" exit=" << (r.exit_code ? std::to_string(*r.exit_code) : "none") << " signal=" << r.signal
    << " wall_ms=" << r.usage.wall_ms << " cpu_ms=" << r.usage.cpu_ms
    << " mem=" << r.usage.memory_bytes << " trunc=" << r.stdout_truncated << "/"
    << r.stderr_truncated << "\nstdout: " << r.stdout_text.substr(0, 2000)
    << "\nstderr: " << r.stderr_text.substr(0, 2000);
  if (r.compile) {
    s << "\ncompile: " << engine::StatusName(r.compile->status) << " "
      << r.compile->stderr_text.substr(0, 2000);
  }
  return s.str();
}

std::unique_ptr<engine::Engine> EscapeTest::engine_;
std::string EscapeTest::temp_dir_;

void EscapeTest::SetUpTestSuite() {
  // Orphans of ours come to us, not to the host's init: a leak cannot hide behind reparenting.
  ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
  if (engine_) return;
  char tmpl[] = "/tmp/polyrun-escape-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return;
  temp_dir_ = tmpl;
  std::filesystem::create_directories(temp_dir_ + "/cache");
  engine::EngineConfig config;
  config.languages_dir = POLYRUN_LANGUAGES_DIR;
  config.cache_dir = temp_dir_ + "/cache";
  auto e = engine::Engine::Create(config);
  if (!e) {
    std::fprintf(stderr, "escape: engine creation failed: %s\n", e.error().message().c_str());
    return;
  }
  engine_ = std::move(*e);
}

void EscapeTest::TearDownTestSuite() {
  engine_.reset();
  if (!temp_dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(temp_dir_, ec);
    temp_dir_.clear();
  }
}

void EscapeTest::SetUp() {
  ASSERT_TRUE(engine_) << "the engine could not be created (see stderr); this suite needs root, "
                          "user namespaces and cgroups";
  ASSERT_EQ(::geteuid(), 0u) << "the escape suite runs as root (sandbox uid 65534)";
  before_ = SandboxUidSnapshot();
  ASSERT_FALSE(PolyrunCgroupDirs().empty()) << "no polyrun cgroup directories detected";
  ASSERT_TRUE(OurRunCgroups().empty()) << "run cgroups of ours exist before the test";
}

void EscapeTest::TearDown() {
  if (!engine_) return;
  ExpectHostClean();
  ExpectResponsive();
  ExpectHostClean();
}

void EscapeTest::ExpectHostClean() {
  // Runs are answered before the kernel has torn them down; Settle waits for that.
  auto settled = engine_->sandbox().Settle();
  EXPECT_TRUE(settled) << settled.error().message();
  auto leaked = LeakedSandboxProcesses(before_);
  std::string list;
  for (const auto& l : leaked) list += "\n  " + l;
  EXPECT_TRUE(leaked.empty()) << "processes with the sandbox's host uid outlived the run:" << list;
  KillLeaked(leaked);
  auto cgroups = OurRunCgroups();
  std::string dirs;
  for (const auto& c : cgroups) dirs += "\n  " + c;
  EXPECT_TRUE(cgroups.empty()) << "run cgroups left behind:" << dirs;
}

void EscapeTest::ExpectResponsive() {
  std::chrono::milliseconds elapsed{};
  auto r = Run("bash", "echo ok\n", {}, &elapsed);
  EXPECT_EQ(r.status, engine::Status::kOk) << Describe(r);
  EXPECT_EQ(r.stdout_text, "ok\n");
  EXPECT_LT(elapsed.count(), 2000) << "a trivial run took " << elapsed.count() << " ms";
}

engine::ExecutionResult EscapeTest::Run(const std::string& language, const std::string& code,
                                        const RunOptions& options,
                                        std::chrono::milliseconds* elapsed) {
  engine::ExecutionRequest req;
  req.language = language;
  req.code = code;
  req.args = options.args;
  req.stdin_data = options.stdin_data;
  req.cancel_fd = options.cancel_fd;
  for (const auto& [name, value] : options.limits) {
    auto r = req.limits.Set(name, value);
    EXPECT_TRUE(r.has_value()) << "limit " << name << "=" << value;
  }
  auto start = std::chrono::steady_clock::now();
  auto result = engine_->Run(req, options.sink);
  if (elapsed != nullptr) {
    *elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - start);
  }
  // A probe that does not compile would make every assertion about it meaningless.
  if (result.compile && options.must_compile) {
    EXPECT_EQ(result.compile->status, engine::Status::kOk)
        << "probe failed to compile: " << result.compile->stderr_text;
  }
  return result;
}

PooledEngine::~PooledEngine() {
  engine.reset();
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

std::unique_ptr<PooledEngine> StartPooledEngine(size_t warm_pool_size, bool zygotes,
                                                size_t prebuilt) {
  char tmpl[] = "/tmp/polyrun-pooled-test-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) {
    ADD_FAILURE() << "mkdtemp: " << std::strerror(errno);
    return nullptr;
  }
  auto pooled = std::make_unique<PooledEngine>();
  pooled->dir = tmpl;
  std::filesystem::create_directories(pooled->dir + "/cache");
  engine::EngineConfig config;
  config.languages_dir = POLYRUN_LANGUAGES_DIR;
  config.cache_dir = pooled->dir + "/cache";
  config.warm_pool_size = warm_pool_size;
  config.zygotes = zygotes;
  config.prebuilt_sandboxes = prebuilt;
  auto e = engine::Engine::Create(config);
  if (!e) {
    ADD_FAILURE() << "this suite needs root, user namespaces and cgroups: " << e.error().message();
    return nullptr;
  }
  pooled->engine = std::move(*e);
  pooled->engine->StartWarmPools();
  return pooled;
}

std::vector<SelfTestCase> SelfTestCases(bool warm_only) {
  namespace fs = std::filesystem;
  std::vector<SelfTestCase> out;
  for (const auto& dir : fs::directory_iterator(POLYRUN_LANGUAGES_DIR)) {
    if (!fs::exists(dir.path() / "manifest.toml") ||
        (warm_only && !toml::parse((dir.path() / "manifest.toml").string()).contains("warm"))) {
      continue;
    }
    const std::string lang = dir.path().filename().string();
    for (const auto& f : fs::directory_iterator(dir.path() / "tests")) {
      const toml::value spec = toml::parse(f.path().string());
      if (f.path().filename() == "session.toml" || toml::find_or<bool>(spec, "check", false) ||
          (warm_only && spec.contains("env"))) {
        continue;
      }
      out.push_back({lang, f.path()});
    }
  }
  std::sort(out.begin(), out.end(),
            [](const SelfTestCase& a, const SelfTestCase& b) { return a.file < b.file; });
  return out;
}

engine::ExecutionRequest SelfTestRequest(const SelfTestCase& c) {
  const toml::value spec = toml::parse(c.file.string());
  engine::ExecutionRequest req;
  req.language = c.language;
  if (spec.contains("code")) {
    req.code = toml::find<std::string>(spec, "code");
  } else {
    req.entry = toml::find<std::string>(spec, "entry");
    for (const auto& f : toml::find<toml::array>(spec, "files")) {
      std::string content = toml::find<std::string>(f, "content");
      if (toml::find_or<std::string>(f, "encoding", "utf8") == "base64") {
        auto bytes = Base64Decode(content);
        EXPECT_TRUE(bytes) << c.file << ": " << bytes.error().message();
        content = bytes ? std::move(*bytes) : std::string();
      }
      req.files.push_back({toml::find<std::string>(f, "name"), std::move(content)});
    }
  }
  req.stdin_data = toml::find_or<std::string>(spec, "stdin", "");
  req.args = toml::find_or<std::vector<std::string>>(spec, "args", {});
  req.env = toml::find_or<std::map<std::string, std::string>>(spec, "env", {});
  return req;
}

std::string SelfTestName(const ::testing::TestParamInfo<SelfTestCase>& info) {
  std::string name = info.param.language + "_" + info.param.file.stem().string();
  std::replace_if(
      name.begin(), name.end(), [](char c) { return !std::isalnum(c); }, '_');
  return name;
}

bool PollUntil(const std::function<bool()>& done, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));  // polling a condition
  }
  return done();
}

bool ZygoteReady(engine::Engine& engine, const std::string& language) {
  if (PollUntil([&] { return engine.ZygoteStats()[language].ready; }, std::chrono::seconds(60))) {
    return true;
  }
  for (const auto& [id, st] : engine.ZygoteStats()) {
    ADD_FAILURE() << id << ": started " << st.started << " last error: " << st.last_error;
  }
  return false;
}

engine::ExecutionRequest PythonRequest(const std::string& code) {
  engine::ExecutionRequest req;
  req.language = "python";
  req.code = code;
  return req;
}

}  // namespace polyrun::escape
