#include "server/server_config.h"

#include <algorithm>
#include <array>
#include <sstream>
#include <toml.hpp>

namespace polyrun::server {

namespace {

constexpr std::array<OptionDecl, 19> kServerSettings = {{
    {"listen", "listen", OptionType::kString, "127.0.0.1:8080",
     "Address and port to serve on (HOST:PORT; port 0 picks a free one)"},
    {"data", "data", OptionType::kString, "",
     "Data directory; the SQLite store is DATA/polyrun.db (default: $XDG_DATA_HOME/polyrun or "
     "~/.local/share/polyrun)"},
    {"store", "store", OptionType::kString, "",
     "Event store: a postgresql://… URI, or a SQLite file path (default: DATA/polyrun.db)"},
    {"max_running", "max-running", OptionType::kCount, "0",
     "Executions running at once (0: one per CPU)", 0, 4096},
    {"max_queued", "max-queued", OptionType::kCount, "64",
     "Executions admitted and waiting; beyond it requests get 429 with Retry-After", 0, 100000},
    {"io_threads", "io-threads", OptionType::kCount, "2", "Threads serving HTTP and WebSocket I/O",
     1, 64},
    {"max_body", "max-body", OptionType::kSize, "16M",
     "Largest request body or WebSocket message (413 beyond)", 1024, 1ull << 30},
    {"max_files", "max-files", OptionType::kCount, "64", "Most files in one request", 1, 10000},
    {"max_code", "max-code", OptionType::kSize, "4M",
     "Largest total of a request's source files, decoded", 1, 1ull << 30},
    {"max_stdin", "max-stdin", OptionType::kSize, "4M", "Largest stdin in one request", 0,
     1ull << 30},
    {"shutdown_grace", "shutdown-grace", OptionType::kDuration, "10s",
     "On SIGTERM/SIGINT: how long running executions may finish before they are cancelled", 0,
     3600000},
    {"retention_age", "retention-age", OptionType::kDuration, "0",
     "Delete finished executions older than this (0: keep)", 0, UINT64_MAX},
    {"retention_count", "retention-count", OptionType::kCount, "0",
     "Keep at most this many finished executions, newest first (0: keep all)", 0, UINT64_MAX},
    {"allow_anonymous", "allow-anonymous", OptionType::kBool, "false",
     "Serve a non-loopback address without API keys (otherwise refused at start)"},
    {"prune_interval", "", OptionType::kDuration, "1m", "How often retention is applied", 1000,
     86400000},
    {"max_sessions", "max-sessions", OptionType::kCount, "8",
     "Live sessions at once; beyond it POST /v1/sessions gets 503 with Retry-After", 0, 4096},
    {"session_lifetime", "session-lifetime", OptionType::kDuration, "1h",
     "A session's lifetime when its request names none", 1000, UINT64_MAX},
    {"session_max_lifetime", "session-max-lifetime", OptionType::kDuration, "24h",
     "The longest lifetime a session may ask for", 1000, UINT64_MAX},
    {"session_idle_timeout", "session-idle-timeout", OptionType::kDuration, "15m",
     "A session idle this long is closed, when its request names no idle_timeout", 1000,
     UINT64_MAX},
}};

const OptionDecl* DeclNamed(std::string_view name) {
  auto it = std::find_if(kServerSettings.begin(), kServerSettings.end(),
                         [&](const OptionDecl& d) { return d.name == name; });
  return it == kServerSettings.end() ? nullptr : &*it;
}

Result<std::string> TomlText(const toml::value& v, const OptionDecl& d) {
  const std::string where = "server." + std::string(d.name);
  if (v.is_string()) return v.as_string().str;
  if (v.is_integer() && d.type != OptionType::kString && d.type != OptionType::kBool) {
    if (v.as_integer() < 0) return Fail(Errc::kParse, where + ": must not be negative");
    return std::to_string(v.as_integer());
  }
  if (v.is_boolean() && d.type == OptionType::kBool) return v.as_boolean() ? "true" : "false";
  return Fail(Errc::kParse, where + ": expected a " + std::string(OptionTypeName(d.type)));
}

Result<void> ParseKeys(const toml::value& v, ServeSettings& s) {
  if (!v.is_table()) return Fail(Errc::kParse, "server.keys: expected a table of keys");
  std::vector<ApiKey> keys;
  for (const auto& [name, t] : v.as_table()) {
    const std::string where = "server.keys." + name;
    if (!t.is_table()) return Fail(Errc::kParse, where + ": expected a table");
    ApiKey k;
    k.name = name;
    for (const auto& [field, fv] : t.as_table()) {
      if (field == "sha256" && fv.is_string()) {
        k.sha256 = fv.as_string().str;
        std::transform(k.sha256.begin(), k.sha256.end(), k.sha256.begin(), ::tolower);
        if (k.sha256.size() != 64 || !std::all_of(k.sha256.begin(), k.sha256.end(),
                                                  [](char c) { return std::isxdigit(c); })) {
          return Fail(Errc::kParse,
                      where + ".sha256: expected 64 hex digits (printf %s \"$KEY\" | sha256sum)");
        }
      } else if (field == "runs_per_minute" && (fv.is_integer() || fv.is_floating())) {
        k.runs_per_minute =
            fv.is_integer() ? static_cast<double>(fv.as_integer()) : fv.as_floating();
        if (k.runs_per_minute < 0)
          return Fail(Errc::kParse, where + ".runs_per_minute: must not be negative");
      } else if (field == "max_running" && fv.is_integer() && fv.as_integer() >= 0) {
        k.max_running = static_cast<size_t>(fv.as_integer());
      } else {
        return Fail(Errc::kParse, where + "." + field +
                                      ": unknown or mistyped key (sha256: string, runs_per_minute: "
                                      "number, max_running: integer)");
      }
    }
    if (k.sha256.empty()) return Fail(Errc::kParse, where + ".sha256: required");
    keys.push_back(std::move(k));
  }
  s.server.keys = ApiKeys(std::move(keys));
  return {};
}

}  // namespace

std::span<const OptionDecl> ServerSettingDecls() {
  return kServerSettings;
}

Result<void> ApplyServerSetting(ServeSettings& s, std::string_view name, std::string_view text) {
  const OptionDecl* d = DeclNamed(name);
  if (d == nullptr)
    return Fail(Errc::kInvalidArgument, "server." + std::string(name) + ": unknown key");
  const std::string where = "server." + std::string(name);
  uint64_t n = 0;
  bool flag = false;
  if (d->type == OptionType::kBool) {
    if (text != "true" && text != "false") {
      return Fail(Errc::kInvalidArgument,
                  where + ": expected true or false, got \"" + std::string(text) + "\"");
    }
    flag = text == "true";
  } else if (d->type != OptionType::kString) {
    auto parsed = ParseOptionNumber(*d, text);
    if (!parsed) {
      Error e = parsed.error();
      e.context = "server." + e.context;
      return std::unexpected(e);
    }
    n = *parsed;
  }
  const std::string str(text);
  if (name == "listen")
    s.server.listen = str;
  else if (name == "data")
    s.data_dir = str;
  else if (name == "store")
    s.store = str;
  else if (name == "max_running")
    s.max_running = n;
  else if (name == "max_queued")
    s.max_queued = n;
  else if (name == "io_threads")
    s.server.io_threads = n;
  else if (name == "max_body")
    s.server.http.max_body = s.server.http.max_ws_message = n;
  else if (name == "max_files")
    s.server.caps.max_files = n;
  else if (name == "max_code")
    s.server.caps.max_code_bytes = n;
  else if (name == "max_stdin")
    s.server.caps.max_stdin_bytes = n;
  else if (name == "shutdown_grace")
    s.server.shutdown_grace = std::chrono::milliseconds(n);
  else if (name == "retention_age")
    s.server.retention_age = std::chrono::milliseconds(n);
  else if (name == "retention_count")
    s.server.retention_count = n;
  else if (name == "allow_anonymous")
    s.server.allow_anonymous = flag;
  else if (name == "prune_interval")
    s.server.prune_interval = std::chrono::milliseconds(n);
  else if (name == "max_sessions")
    s.sessions.max_sessions = n;
  else if (name == "session_lifetime")
    s.sessions.default_lifetime = std::chrono::milliseconds(n);
  else if (name == "session_max_lifetime")
    s.sessions.max_lifetime = std::chrono::milliseconds(n);
  else if (name == "session_idle_timeout")
    s.sessions.default_idle_timeout = std::chrono::milliseconds(n);
  return {};
}

Result<void> CheckSessionSettings(const ServeSettings& s) {
  if (s.sessions.default_lifetime > s.sessions.max_lifetime) {
    return Fail(Errc::kInvalidArgument,
                "server.session_lifetime: " + std::to_string(s.sessions.default_lifetime.count()) +
                    " ms is above server.session_max_lifetime (" +
                    std::to_string(s.sessions.max_lifetime.count()) + " ms)");
  }
  return {};
}

Result<ServeSettings> ParseServeSettings(const std::string& toml_text, const std::string& origin,
                                         ServeSettings base) {
  toml::value root;
  try {
    std::istringstream in(toml_text);
    root = toml::parse(in, origin);
  } catch (const std::exception& e) {
    return Fail(Errc::kParse, e.what());
  }
  if (!root.is_table() || !root.contains("server")) return base;
  const toml::value& server = root.at("server");
  if (!server.is_table()) return Fail(Errc::kParse, origin + ": server: expected a table");
  for (const auto& [key, value] : server.as_table()) {
    Result<void> applied;
    if (key == "keys") {
      applied = ParseKeys(value, base);
    } else if (const OptionDecl* d = DeclNamed(key)) {
      auto text = TomlText(value, *d);
      applied = text ? ApplyServerSetting(base, key, *text) : std::unexpected(text.error());
    } else {
      applied = Fail(Errc::kParse, "server." + key + ": unknown key");
    }
    if (!applied) {
      Error e = applied.error();
      e.context = origin + ": " + e.context;
      return std::unexpected(e);
    }
  }
  return base;
}

std::string ServerOptionsMarkdown() {
  std::ostringstream out;
  out << "\n## Server\n\n`polyrun serve` reads the `[server]` table of the config file; each key "
         "with a flag can also be given as `polyrun serve --FLAG`, which wins.\n\n"
      << "| key | CLI flag | type | default | meaning |\n|---|---|---|---|---|\n";
  for (const auto& d : kServerSettings) {
    out << "| `server." << d.name << "` | "
        << (d.flag.empty() ? "" : "`--" + std::string(d.flag) + "`") << " | "
        << OptionTypeName(d.type) << " | "
        << (d.default_value.empty() ? "" : "`" + std::string(d.default_value) + "`") << " | "
        << d.help << " |\n";
  }
  out << "\nAPI keys: one table per key, `[server.keys.NAME]` with `sha256` (of the key: `printf "
         "%s \"$KEY\" | sha256sum`), `runs_per_minute` (0: unlimited) and `max_running` (0: "
         "unlimited). With no keys, no authentication is asked for, and only a loopback address "
         "may be served unless `allow_anonymous` is set.\n";
  return out.str();
}

}  // namespace polyrun::server
