#pragma once

#include <string>

#include "engine/config.h"
#include "util/error.h"

namespace polyrun::cli {

// Where things are when the user did not say: resolves the config file ($POLYRUN_CONFIG,
// /etc/polyrun/polyrun.toml), the languages directory ($POLYRUN_LANGUAGES, then the languages/
// folder beside the build or install tree) and the cache directory. Flags override all of it.
struct SettingsFlags {
  std::string config_file;
  std::string languages_dir;
  std::string cache_dir;
};

// `config_text`/`config_origin` (optional) receive the config file's text and path, empty when
// there is none, for the layers that read their own tables from it (`[server]`).
Result<engine::EngineConfig> LoadSettings(const SettingsFlags& flags,
                                          std::string* config_text = nullptr,
                                          std::string* config_origin = nullptr);

}  // namespace polyrun::cli
