#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "languages/registry.h"

namespace polyrun::engine {

// What a caller can learn about one language (`polyrun languages`, GET /v1/languages).
struct LanguageInfo {
  std::string id, name, version;  // version empty: unknown (not installed)
  bool usable = false;
  std::string problem;  // why not usable
  std::vector<std::string> aliases, extensions;
  bool compiled = false;
  bool sessions = false;
};

// Every registry entry; `host_problem` (the host cannot sandbox) makes all of them unusable.
// Versions must have been probed (Registry::ProbeVersions) for them to show.
std::vector<LanguageInfo> LanguageInfos(const languages::Registry& registry,
                                        const std::string& host_problem);
nlohmann::json ToJson(const LanguageInfo& l);

}  // namespace polyrun::engine
