#pragma once

#include <optional>
#include <string>
#include <vector>

#include "cli/settings.h"

namespace polyrun::cli {

struct CheckOptions {
  std::vector<std::string> files;  // every file is checked, and each may import the others
  std::string language;            // empty: detect per file
  std::optional<std::string> code;
  bool json = false;
};

// `polyrun check`: 0 when every file parses and all its imports resolve, 1 when some do not,
// 2 for usage errors and files that could not be checked, 70 for internal errors.
int CheckCommand(const CheckOptions& options, const SettingsFlags& settings);

}  // namespace polyrun::cli
