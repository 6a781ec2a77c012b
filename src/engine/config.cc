#include "engine/config.h"

#include <algorithm>
#include <array>
#include <sstream>
#include <toml.hpp>

#include "languages/limits_toml.h"

namespace polyrun::engine {

namespace {

constexpr std::array<OptionDecl, 10> kSettings = {{
    {"languages_dir", "languages-dir", OptionType::kString, "",
     "Directory of language folders (default: $POLYRUN_LANGUAGES, else the languages/ folder "
     "beside the binary's build or install tree)"},
    {"cache_dir", "cache-dir", OptionType::kString, "",
     "Cache directory for version probes and compiled artifacts (default: "
     "$XDG_CACHE_HOME/polyrun or ~/.cache/polyrun)"},
    {"artifact_cache_size", "", OptionType::kSize, "1G",
     "Bound of the compiled-artifact cache in cache_dir/artifacts (least recently used entries "
     "are evicted; 0 turns the cache off)",
     0, UINT64_MAX},
    {"warm_pool_size", "", OptionType::kCount, "2",
     "Warm sandboxes kept ready per language with a warm bootstrap, at most (the pool grows to "
     "this under demand and shrinks when idle; 0 turns warm pools off). Servers only",
     0, 64},
    {"warm_pool_memory", "", OptionType::kSize, "1G",
     "Bound of the memory the waiting warm sandboxes use together", 0, UINT64_MAX},
    {"prebuilt_sandboxes", "", OptionType::kCount, "2",
     "Sandboxes kept built ahead per language, at most, each waiting for one run: the run's "
     "program starts in it at once, with namespaces, root and cgroup already made (the pool "
     "grows to this under demand and shrinks when idle; 0 turns them off). Servers only",
     0, 64},
    {"zygotes", "", OptionType::kBool, "true",
     "Keep a fork server (zygote) for each language with one, started with the warm pools: "
     "runs it can serve are forked from an initialised interpreter. Servers only"},
    {"sandbox.cgroup_root", "", OptionType::kString, "",
     "cgroup v2 directory under which runs get their cgroups (default: polyrun's own cgroup)"},
    {"sandbox.uid", "", OptionType::kCount, "",
     "Host uid the sandbox's user maps to (default: 65534 as root, else your own uid)", 1,
     4294967294u},
    {"sandbox.gid", "", OptionType::kCount, "",
     "Host gid the sandbox's group maps to (default: 65534 as root, else your own gid)", 1,
     4294967294u},
}};

Result<languages::LimitSet> ParseLimitTable(const toml::value& v, const std::string& where,
                                            languages::LimitSet base) {
  if (!v.is_table()) return Fail(Errc::kParse, where + ": expected a table");
  return languages::ParseLimitTable(v.as_table(), where, base);
}

Result<std::string> GetString(const toml::value& v, const std::string& where) {
  if (!v.is_string()) return Fail(Errc::kParse, where + ": expected a string");
  return v.as_string().str;
}

Result<int64_t> GetId(const toml::value& v, const std::string& where) {
  if (!v.is_integer() || v.as_integer() < 0 || v.as_integer() > 4294967294LL) {
    return Fail(Errc::kParse, where + ": expected a uid/gid number");
  }
  return v.as_integer();
}

Result<EngineConfig> ParseRoot(const toml::table& root, EngineConfig cfg) {
  for (const auto& [key, value] : root) {
    if (key == "languages_dir" || key == "cache_dir") {
      auto s = GetString(value, key);
      if (!s) return std::unexpected(s.error());
      (key == "languages_dir" ? cfg.languages_dir : cfg.cache_dir) = *s;
    } else if (key == "artifact_cache_size" || key == "warm_pool_size" ||
               key == "warm_pool_memory" || key == "prebuilt_sandboxes") {
      const OptionDecl& decl = *std::find_if(kSettings.begin(), kSettings.end(),
                                             [&](const OptionDecl& d) { return d.name == key; });
      Result<uint64_t> n = value.is_integer() && value.as_integer() >= 0
                               ? CheckOptionNumber(decl, static_cast<uint64_t>(value.as_integer()))
                           : value.is_string() ? ParseOptionNumber(decl, value.as_string().str)
                                               : Fail(Errc::kParse, key + ": expected a size");
      if (!n) return std::unexpected(n.error());
      (key == "artifact_cache_size"  ? cfg.artifact_cache_bytes
       : key == "warm_pool_memory"   ? cfg.warm_pool_memory
       : key == "prebuilt_sandboxes" ? cfg.prebuilt_sandboxes
                                     : cfg.warm_pool_size) = *n;
    } else if (key == "zygotes") {
      if (!value.is_boolean()) return Fail(Errc::kParse, "zygotes: expected true or false");
      cfg.zygotes = value.as_boolean();
    } else if (key == "sandbox") {
      if (!value.is_table()) return Fail(Errc::kParse, "sandbox: expected a table");
      for (const auto& [k, v] : value.as_table()) {
        std::string where = "sandbox." + k;
        if (k == "cgroup_root") {
          auto s = GetString(v, where);
          if (!s) return std::unexpected(s.error());
          cfg.cgroup_root = *s;
        } else if (k == "uid" || k == "gid") {
          auto id = GetId(v, where);
          if (!id) return std::unexpected(id.error());
          (k == "uid" ? cfg.sandbox_uid : cfg.sandbox_gid) = *id;
        } else {
          return Fail(Errc::kParse, where + ": unknown key");
        }
      }
    } else if (key == "limits" || key == "compile_limits" || key == "ceiling") {
      languages::LimitSet& target = key == "limits"           ? cfg.limits
                                    : key == "compile_limits" ? cfg.compile_limits
                                                              : cfg.ceiling;
      auto l = ParseLimitTable(value, key, target);
      if (!l) return std::unexpected(l.error());
      target = *l;
    } else if (key == "languages") {
      if (!value.is_table()) return Fail(Errc::kParse, "languages: expected a table");
      for (const auto& [id, lang] : value.as_table()) {
        if (!lang.is_table()) return Fail(Errc::kParse, "languages." + id + ": expected a table");
        for (const auto& [k, v] : lang.as_table()) {
          std::string where = "languages." + id + "." + k;
          if (k != "limits" && k != "compile_limits")
            return Fail(Errc::kParse, where + ": unknown key");
          auto& target = k == "limits" ? cfg.language_limits[id] : cfg.language_compile_limits[id];
          auto l = ParseLimitTable(v, where, target);
          if (!l) return std::unexpected(l.error());
          target = *l;
        }
      }
    } else if (key == "server") {
      // The server's own table: parsed and checked by the server layer (server_config.cc).
    } else {
      return Fail(Errc::kParse, key + ": unknown key");
    }
  }
  return cfg;
}

}  // namespace

std::span<const OptionDecl> SettingDecls() {
  return kSettings;
}

Result<EngineConfig> ParseConfig(const std::string& toml_text, const std::string& origin,
                                 EngineConfig base) {
  toml::value root;
  try {
    std::istringstream in(toml_text);
    root = toml::parse(in, origin);
  } catch (const std::exception& e) {
    return Fail(Errc::kParse, e.what());
  }
  if (!root.is_table()) return Fail(Errc::kParse, origin + ": not a TOML table");
  auto cfg = ParseRoot(root.as_table(), std::move(base));
  if (!cfg) {
    Error e = cfg.error();
    e.context = origin + ": " + e.context;
    return std::unexpected(e);
  }
  return cfg;
}

std::string OptionsMarkdown() {
  std::ostringstream out;
  out << "# polyrun options\n\n"
      << "Generated by `polyrun options --markdown` from the declarations in the code; do not "
         "edit by hand.\n\n"
      << "## Limits\n\n"
      << "Each limit can be set per run (CLI flag, or `limits` in an API request), per language "
         "in a manifest (`[run.limits]`, `[compile.limits]`), by the operator per language "
         "(`[languages.ID.limits]`), globally (`[limits]`, `[compile_limits]`) and capped by "
         "`[ceiling]`. Precedence: request > operator per language > language > global. "
         "Durations accept `ms`, `s`, `m`, `h` (a bare number is milliseconds); sizes accept "
         "`K`, `M`, `G`, `T` (binary; a bare number is bytes).\n\n"
      << "| key | CLI flag | type | default | range | meaning |\n|---|---|---|---|---|---|\n";
  for (const auto& d : languages::LimitDecls()) {
    out << "| `" << d.name << "` | `--" << d.flag << "` | " << OptionTypeName(d.type) << " | `"
        << d.default_value << "` | " << FormatOptionNumber(d, d.min) << " – "
        << FormatOptionNumber(d, d.max) << " | " << d.help << " |\n";
  }
  out << "\n## Settings\n\nIn the config file (`--config FILE`, `$POLYRUN_CONFIG`, or "
         "`/etc/polyrun/polyrun.toml`).\n\n"
      << "| key | CLI flag | type | meaning |\n|---|---|---|---|\n";
  for (const auto& d : kSettings) {
    out << "| `" << d.name << "` | " << (d.flag.empty() ? "" : "`--" + std::string(d.flag) + "`")
        << " | " << OptionTypeName(d.type) << " | " << d.help << " |\n";
  }
  return out.str();
}

}  // namespace polyrun::engine
