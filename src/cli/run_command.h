#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "cli/settings.h"

namespace polyrun::cli {

struct RunOptions {
  std::vector<std::string> files;  // "-" alone: read the code from stdin
  std::string language;
  std::optional<std::string> code;
  std::optional<std::string> input;
  std::string input_file;
  std::vector<std::string> args;
  std::vector<std::string> env;               // "KEY=VALUE"
  std::map<std::string, std::string> limits;  // limit name -> text, from the flags
  bool json = false;
};

// `polyrun run`: returns the process exit code (exit_codes.h).
int RunCommand(const RunOptions& options, const SettingsFlags& settings);

}  // namespace polyrun::cli
