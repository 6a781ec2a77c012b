#include "languages/registry.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>

#include "util/files.h"
#include "util/strings.h"
#include "util/unique_fd.h"

namespace polyrun::languages {

namespace {

std::string Lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool IsExecutable(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

bool ExpandLangDir(std::string& s, const std::string& dir) {
  return ReplaceAll(s, "{lang_dir}", dir);
}

// Resolves {lang_dir}: the host folder in the version command, kLangDirInSandbox in sandbox
// recipes, which are marked so that only their stages get the folder bound there.
void ResolveLangDir(Language& lang) {
  for (auto& a : lang.version_command) ExpandLangDir(a, lang.dir);
  for (Recipe* r : {lang.compile ? &*lang.compile : nullptr, &lang.run,
                    lang.check ? &*lang.check : nullptr, lang.session ? &*lang.session : nullptr,
                    lang.warm ? &*lang.warm : nullptr, lang.zygote ? &*lang.zygote : nullptr}) {
    if (r == nullptr) continue;
    for (auto& a : r->command) r->uses_lang_dir |= ExpandLangDir(a, kLangDirInSandbox);
    for (auto& [k, v] : r->env) r->uses_lang_dir |= ExpandLangDir(v, kLangDirInSandbox);
  }
}

std::string CheckToolchain(const Language& lang) {
  auto check = [&](const std::vector<std::string>& cmd, const char* what) -> std::string {
    const std::string program = HostPath(lang, cmd[0]);
    if (!IsExecutable(program))
      return std::string(what) + " program " + program + " is not installed";
    return "";
  };
  // A compiled language runs its own artifact from the work dir; only the compiler is checked.
  const bool runs_artifact = lang.compile && lang.run.command[0].starts_with("/work/");
  if (!runs_artifact) {
    if (auto p = check(lang.run.command, "run"); !p.empty()) return p;
  }
  if (lang.compile) {
    if (auto p = check(lang.compile->command, "compile"); !p.empty()) return p;
  }
  if (auto p = check(lang.version_command, "version"); !p.empty()) return p;
  if (lang.check) {
    if (auto p = check(lang.check->command, "check"); !p.empty()) return p;
  }
  for (const auto& b : lang.binds) {
    struct stat st {};
    if (!b.optional && ::lstat(b.path.c_str(), &st) != 0)
      return "bind path " + b.path + " is missing";
  }
  return "";
}

std::string CacheKey(const std::vector<std::string>& argv) {
  std::string key;
  for (const auto& a : argv) key += a + "\x1f";
  return key + FileStamp(argv[0]);
}

}  // namespace

std::string FolderStamp(const Language& lang) {
  std::vector<std::string> names;
  if (DIR* d = ::opendir(lang.dir.c_str())) {
    while (dirent* e = ::readdir(d)) names.emplace_back(e->d_name);
    ::closedir(d);
  }
  std::sort(names.begin(), names.end());
  names.emplace_back("node_modules/.package-lock.json");
  std::string out;
  for (const auto& n : names) {
    if (std::string stamp = FileStamp(lang.dir + "/" + n); !stamp.empty()) {
      out += n + ":" + stamp + ";";
    }
  }
  return out;
}

Result<std::string> RunHostProgram(const std::vector<std::string>& argv, int timeout_ms) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return SysFail("pipe2", "version probe");
  UniqueFd rd(fds[0]), wr(fds[1]);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, wr.get(), 1);
  posix_spawn_file_actions_adddup2(&fa, wr.get(), 2);
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  char path_env[] = "PATH=/usr/local/bin:/usr/bin:/bin";
  char lang_env[] = "LANG=C.UTF-8";
  char home_env[] = "HOME=/nonexistent";
  char* envp[] = {path_env, lang_env, home_env, nullptr};
  // Every signal at its default and none blocked, whatever this process has: the server blocks
  // SIGINT and SIGTERM in every thread, and the sandbox ignores SIGPIPE (Sandbox::Create).
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, argv[0].c_str(), &fa, &attr, args.data(), envp);
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return SysFail("posix_spawn", argv[0], rc);
  wr.reset();
  std::string out;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{rd.get(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    char buf[4096];
    ssize_t n = ::read(rd.get(), buf, sizeof buf);
    if (n <= 0) break;
    if (out.size() < 65536) out.append(buf, static_cast<size_t>(n));
  }
  // Output closed: wait for the exit within what is left of the deadline.
  int status = 0;
  for (;;) {
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return out;
    if (r < 0 && errno != EINTR) return SysFail("waitpid", argv[0]);
    if (std::chrono::steady_clock::now() >= deadline) break;
    ::usleep(1000);
  }
  ::kill(pid, SIGKILL);  // our own child, by its id
  ::waitpid(pid, &status, 0);
  return Fail(Errc::kInternal,
              argv[0] + ": did not finish within " + std::to_string(timeout_ms) + " ms");
}

namespace {

Result<std::vector<std::string>> ListFolders(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return SysFail("opendir", "languages directory " + dir);
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name.empty() || name[0] == '.' || name[0] == '_') continue;
    struct stat st {};
    if (::stat((dir + "/" + name + "/manifest.toml").c_str(), &st) == 0) names.push_back(name);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

Result<LanguageEntry> Registry::LoadEntry(const std::string& dir, const std::string& name,
                                          bool check_patterns) {
  LanguageEntry entry;
  entry.id = name;
  std::string path = dir + "/" + name + "/manifest.toml";
  auto text = ReadTrustedFile(path, 1 << 20);
  if (!text) {
    entry.problem = text.error().message();
    return entry;
  }
  auto lang = ParseManifest(*text, path, check_patterns);
  if (!lang) {
    entry.problem = "invalid manifest: " + lang.error().message();
    return entry;
  }
  if (lang->id != name) {
    entry.problem = "invalid manifest: " + path + ": id \"" + lang->id +
                    "\" does not match its folder \"" + name + "\"";
    return entry;
  }
  // Canonical: the folder is bound into sandboxes and named in cache keys.
  char* real = ::realpath((dir + "/" + name).c_str(), nullptr);
  lang->dir = real != nullptr ? real : dir + "/" + name;
  std::free(real);
  ResolveLangDir(*lang);
  entry.problem = CheckToolchain(*lang);
  entry.usable = entry.problem.empty();
  entry.language = std::make_shared<const Language>(std::move(*lang));
  return entry;
}

Result<Registry> Registry::LoadFor(const std::string& dir, const std::string& raw_name,
                                   const std::string& cache_dir, bool check_patterns) {
  const std::string index_file = cache_dir.empty() ? "" : cache_dir + "/languages-index.json";
  auto folders = ListFolders(dir);
  if (!folders || index_file.empty()) return Load(dir, check_patterns);
  std::string name = Lower(raw_name);
  std::string ext_key = name.starts_with(".") ? name : "." + name;

  nlohmann::json index;
  if (auto text = ReadTrustedFile(index_file, 1 << 20); text) {
    index = nlohmann::json::parse(*text, nullptr, false);
  }
  bool fresh = index.is_object() && index.value("dir", "") == dir && index.contains("folders") &&
               index["folders"].size() == folders->size();
  if (fresh) {
    for (const auto& f : *folders) {
      auto it = index["folders"].find(f);
      if (it == index["folders"].end() ||
          it->value("stamp", "") != FileStamp(dir + "/" + f + "/manifest.toml")) {
        fresh = false;
        break;
      }
    }
  }
  if (!fresh) {
    auto full = Load(dir, check_patterns);
    if (!full) return full;
    nlohmann::json out = {{"dir", dir}, {"folders", nlohmann::json::object()}};
    for (const auto& e : full->entries_) {
      std::vector<std::string> keys = {e.id};
      if (e.language) {
        for (const auto& a : e.language->aliases) keys.push_back(Lower(a));
        for (const auto& x : e.language->extensions) keys.push_back("." + Lower(x));
      }
      out["folders"][e.id] = {{"stamp", FileStamp(dir + "/" + e.id + "/manifest.toml")},
                              {"keys", keys}};
    }
    // A cache: failing to write it only costs the next run a full load.
    [[maybe_unused]] auto written = WriteFileAtomic(index_file, out.dump());
    return full;
  }
  for (const auto& [folder, info] : index["folders"].items()) {
    for (const auto& key : info.value("keys", nlohmann::json::array())) {
      if (key == name || (key.get<std::string>().starts_with(".") && key == ext_key)) {
        Registry reg;
        reg.dir_ = dir;
        auto entry = LoadEntry(dir, folder, check_patterns);
        if (!entry) return std::unexpected(entry.error());
        reg.entries_.push_back(std::move(*entry));
        return reg;
      }
    }
  }
  return Load(dir, check_patterns);  // unknown name: the full registry names what is known
}

Result<Registry> Registry::Load(const std::string& dir, bool check_patterns) {
  Registry reg;
  reg.dir_ = dir;
  auto names = ListFolders(dir);
  if (!names) return std::unexpected(names.error());
  for (const auto& name : *names) {
    auto entry = LoadEntry(dir, name, check_patterns);
    if (!entry) return std::unexpected(entry.error());
    reg.entries_.push_back(std::move(*entry));
  }
  // Aliases and extensions must be unambiguous across languages.
  std::map<std::string, std::string> claimed;
  for (auto& e : reg.entries_) {
    if (!e.language) continue;
    std::vector<std::string> keys = {e.language->id};
    for (const auto& a : e.language->aliases) keys.push_back(Lower(a));
    for (const auto& x : e.language->extensions) keys.push_back("." + Lower(x));
    for (const auto& k : keys) {
      auto [it, inserted] = claimed.emplace(k, e.id);
      if (!inserted && it->second != e.id) {
        return Fail(Errc::kParse,
                    "languages: \"" + k + "\" is claimed by both " + it->second + " and " + e.id);
      }
    }
  }
  return reg;
}

const LanguageEntry* Registry::Find(const std::string& raw) const {
  std::string name = Lower(raw);
  for (const auto& e : entries_) {
    if (e.id == name) return &e;
  }
  for (const auto& e : entries_) {
    if (!e.language) continue;
    for (const auto& a : e.language->aliases) {
      if (Lower(a) == name) return &e;
    }
  }
  return FindByExtension(name);
}

const LanguageEntry* Registry::FindByExtension(const std::string& raw) const {
  std::string ext = Lower(raw);
  if (!ext.empty() && ext[0] == '.') ext.erase(0, 1);
  for (const auto& e : entries_) {
    if (!e.language) continue;
    for (const auto& x : e.language->extensions) {
      if (Lower(x) == ext) return &e;
    }
  }
  return nullptr;
}

std::string Registry::VersionOf(const std::string& id, const std::string& cache_dir) {
  for (auto& e : entries_) {
    if (e.id != id || !e.language) continue;
    if (!e.version.empty()) return e.version;
    const Language& lang = *e.language;
    std::string key = CacheKey(lang.version_command) + "\x1f" + FolderStamp(lang);
    nlohmann::json cache = nlohmann::json::object();
    std::string cache_file = cache_dir.empty() ? "" : cache_dir + "/versions.json";
    if (!cache_file.empty()) {
      if (auto text = ReadTrustedFile(cache_file, 1 << 20); text) {
        cache = nlohmann::json::parse(*text, nullptr, false);
        if (!cache.is_object()) cache = nlohmann::json::object();
      }
      if (auto it = cache.find(key); it != cache.end() && it->is_string()) {
        e.version = it->get<std::string>();
        return e.version;
      }
    }
    auto out = RunHostProgram(lang.version_command);
    if (!out) {
      e.usable = false;
      e.problem = "version probe failed: " + out.error().message();
      return "";
    }
    std::string version;
    for (const auto& line : Split(*out, '\n')) {
      if (!lang.version_pattern.has_value()) break;
      if (auto m = lang.version_pattern->Match(line); m && m->contains("version")) {
        version = m->at("version");
        break;
      }
    }
    if (version.empty()) {
      e.usable = false;
      e.problem = "version probe: no version in the output of " + lang.version_command[0] + ": " +
                  std::string(Trim(out->substr(0, 200)));
      return "";
    }
    e.version = version;
    if (!cache_file.empty()) {
      cache[key] = version;
      ::mkdir(cache_dir.c_str(), 0755);
      // A cache: failing to write it only costs the next run a probe.
      [[maybe_unused]] auto written = WriteFileAtomic(cache_file, cache.dump(1));
    }
    return version;
  }
  return "";
}

void Registry::ProbeVersions(const std::string& cache_dir) {
  for (auto& e : entries_) {
    if (e.usable) VersionOf(e.id, cache_dir);
  }
}

}  // namespace polyrun::languages
