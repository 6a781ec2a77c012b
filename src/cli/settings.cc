#include "cli/settings.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

#include "util/files.h"

namespace polyrun::cli {

namespace {

bool IsDir(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

std::string ExeDir() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "";
  std::string path(buf, static_cast<size_t>(n));
  return path.substr(0, path.rfind('/'));
}

}  // namespace

Result<engine::EngineConfig> LoadSettings(const SettingsFlags& flags, std::string* config_text,
                                          std::string* config_origin) {
  engine::EngineConfig cfg;
  std::string file = flags.config_file;
  bool explicit_file = !file.empty();
  if (file.empty()) {
    file = Env("POLYRUN_CONFIG");
    explicit_file = !file.empty();
  }
  if (file.empty() && ::access("/etc/polyrun/polyrun.toml", F_OK) == 0)
    file = "/etc/polyrun/polyrun.toml";
  if (!file.empty()) {
    auto text = ReadTrustedFile(file, 1 << 20);
    if (!text) {
      if (explicit_file || text.error().sys_errno != ENOENT) return std::unexpected(text.error());
    } else {
      auto parsed = engine::ParseConfig(*text, file, cfg);
      if (!parsed) return std::unexpected(parsed.error());
      cfg = std::move(*parsed);
      if (config_text) *config_text = *text;
      if (config_origin) *config_origin = file;
    }
  }
  if (!flags.languages_dir.empty()) cfg.languages_dir = flags.languages_dir;
  if (cfg.languages_dir.empty()) cfg.languages_dir = Env("POLYRUN_LANGUAGES");
  if (cfg.languages_dir.empty()) {
    const std::string exe = ExeDir();
    for (const std::string& candidate : {exe + "/../languages", exe + "/../share/polyrun/languages",
                                         std::string(POLYRUN_LANGUAGES_DIR)}) {
      if (IsDir(candidate)) {
        cfg.languages_dir = candidate;
        break;
      }
    }
  }
  if (cfg.languages_dir.empty()) {
    return Fail(Errc::kNotFound,
                "no languages directory found; pass --languages-dir or set POLYRUN_LANGUAGES");
  }
  if (!flags.cache_dir.empty()) cfg.cache_dir = flags.cache_dir;
  if (cfg.cache_dir.empty()) {
    std::string xdg = Env("XDG_CACHE_HOME"), home = Env("HOME");
    if (!xdg.empty()) {
      cfg.cache_dir = xdg + "/polyrun";
    } else if (!home.empty()) {
      cfg.cache_dir = home + "/.cache/polyrun";
    }
    if (!cfg.cache_dir.empty()) {
      // Create the parent (e.g. ~/.cache) when missing; a failure leaves caching off.
      std::string parent = cfg.cache_dir.substr(0, cfg.cache_dir.rfind('/'));
      ::mkdir(parent.c_str(), 0755);
      ::mkdir(cfg.cache_dir.c_str(), 0755);
      if (!IsDir(cfg.cache_dir)) cfg.cache_dir.clear();
    }
  }
  return cfg;
}

}  // namespace polyrun::cli
