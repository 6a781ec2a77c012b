#pragma once

#include <map>
#include <string>

#include "cli/settings.h"

namespace polyrun::cli {

struct ServeOptions {
  std::map<std::string, std::string> settings;  // [server] key -> flag text, as given
};

// `polyrun serve`: the HTTP/WebSocket server on the configured store until SIGINT/SIGTERM, then
// a graceful shutdown. Returns the process exit code.
int ServeCommand(const ServeOptions& options, const SettingsFlags& settings);

}  // namespace polyrun::cli
