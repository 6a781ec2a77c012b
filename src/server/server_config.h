#pragma once

#include <map>
#include <span>
#include <string>

#include "server/server.h"
#include "util/error.h"
#include "util/options.h"

namespace polyrun::server {

// Everything `polyrun serve` is configured with: the [server] table of the config file, then
// the serve command's flags (same names, from the same declarations).
struct ServeSettings {
  ServerOptions server;
  std::string data_dir;    // holds polyrun.db; created (0700) when missing
  std::string store;       // "postgresql://…" or a SQLite path; empty: data_dir/polyrun.db
  size_t max_running = 0;  // 0: one per CPU
  size_t max_queued = 64;
  engine::SessionManager::Options sessions;  // max_sessions, session_* keys
};

// The session settings' consistency (session_lifetime within session_max_lifetime); the error
// names the key.
Result<void> CheckSessionSettings(const ServeSettings& s);

// The declarations of the [server] keys (docs/options.md).
std::span<const OptionDecl> ServerSettingDecls();

// Sets one declared setting from text ("8080", "10s", "true"); errors name `server.<name>`.
Result<void> ApplyServerSetting(ServeSettings& s, std::string_view name, std::string_view text);

// Parses the [server] table (and [server.keys.NAME] tables) of a config file over `base`.
// Unknown keys are errors naming them and `origin`.
Result<ServeSettings> ParseServeSettings(const std::string& toml_text, const std::string& origin,
                                         ServeSettings base);

// The [server] section of docs/options.md.
std::string ServerOptionsMarkdown();

}  // namespace polyrun::server
