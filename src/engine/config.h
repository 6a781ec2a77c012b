#pragma once

#include <map>
#include <span>
#include <string>

#include "languages/limits.h"
#include "util/error.h"
#include "util/options.h"

namespace polyrun::engine {

// Operator configuration (a TOML file; every key is declared in SettingDecls() or is a limit
// from languages::LimitDecls()). See docs/options.md, generated from the same declarations.
struct EngineConfig {
  std::string languages_dir;  // folders of language manifests
  std::string cache_dir;      // version probes, compiled artifacts
  std::string cgroup_root;    // cgroup v2 directory to create runs under; empty: automatic
  int64_t sandbox_uid = -1;   // host uid the sandbox user maps to; -1: nobody (as root)
  int64_t sandbox_gid = -1;
  uint64_t artifact_cache_bytes = 1ull << 30;  // compiled-artifact cache bound; 0: off
  size_t warm_pool_size = 2;                   // per language, at most; 0: no warm pools
  uint64_t warm_pool_memory = 1ull << 30;      // the waiting sandboxes' memory together
  uint64_t prebuilt_sandboxes = 2;             // per language, at most; 0: none
  bool zygotes = true;                         // fork servers, started with the warm pools
  languages::LimitSet limits;                  // [limits]: global run defaults
  languages::LimitSet compile_limits;          // [compile_limits]: global compile-stage defaults
  languages::LimitSet ceiling;                 // [ceiling]: no request may exceed these
  std::map<std::string, languages::LimitSet> language_limits;  // [languages.ID.limits]
  std::map<std::string, languages::LimitSet>
      language_compile_limits;  // [languages.ID.compile_limits]
};

// Non-limit settings, declared once: name is the dotted TOML key.
std::span<const OptionDecl> SettingDecls();

// Parses a config file's text over `base`. Unknown keys and bad values are errors naming the
// key and the file.
Result<EngineConfig> ParseConfig(const std::string& toml_text, const std::string& origin,
                                 EngineConfig base);

// Markdown reference of every option (docs/options.md).
std::string OptionsMarkdown();

}  // namespace polyrun::engine
