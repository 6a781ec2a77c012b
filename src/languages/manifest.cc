#include "languages/manifest.h"

#include <set>
#include <sstream>
#include <toml.hpp>

#include "languages/limits_toml.h"

namespace polyrun::languages {

namespace {

// A cursor over one TOML table that remembers which keys were read, so that anything left
// over is reported as unknown.
class Table {
 public:
  Table(const toml::value& v, std::string path, bool check_patterns)
      : path_(std::move(path)), check_patterns_(check_patterns) {
    if (v.is_table()) table_ = &v.as_table();
  }
  bool valid() const { return table_ != nullptr; }
  std::string Where(const std::string& key) const {
    return path_.empty() ? key : path_ + "." + key;
  }
  const toml::value* Get(const std::string& key) {
    seen_.insert(key);
    auto it = table_->find(key);
    return it == table_->end() ? nullptr : &it->second;
  }
  Result<std::optional<std::string>> String(const std::string& key) {
    const auto* v = Get(key);
    if (v == nullptr) return std::optional<std::string>();
    if (!v->is_string()) return Fail(Errc::kParse, Where(key) + ": expected a string");
    return std::optional<std::string>(v->as_string().str);
  }
  Result<std::vector<std::string>> Strings(const std::string& key) {
    std::vector<std::string> out;
    const auto* v = Get(key);
    if (v == nullptr) return out;
    if (!v->is_array()) return Fail(Errc::kParse, Where(key) + ": expected an array of strings");
    for (const auto& item : v->as_array()) {
      if (!item.is_string()) return Fail(Errc::kParse, Where(key) + ": expected only strings");
      out.push_back(item.as_string().str);
    }
    return out;
  }
  Result<std::optional<bool>> Bool(const std::string& key) {
    const auto* v = Get(key);
    if (v == nullptr) return std::optional<bool>();
    if (!v->is_boolean()) return Fail(Errc::kParse, Where(key) + ": expected true or false");
    return std::optional<bool>(v->as_boolean());
  }
  Result<std::optional<Table>> Sub(const std::string& key) {
    const auto* v = Get(key);
    if (v == nullptr) return std::optional<Table>();
    if (!v->is_table()) return Fail(Errc::kParse, Where(key) + ": expected a table");
    return std::optional<Table>(Table(*v, Where(key), check_patterns_));
  }
  Result<std::optional<NamedRegex>> Regex(const std::string& key) {
    auto s = String(key);
    if (!s) return std::unexpected(s.error());
    const std::optional<std::string>& text = *s;
    if (!text.has_value()) return std::optional<NamedRegex>();
    auto re = Pattern(*text, Where(key));
    if (!re) return std::unexpected(re.error());
    return std::optional<NamedRegex>(std::move(*re));
  }
  Result<std::vector<NamedRegex>> Regexes(const std::string& key) {
    auto texts = Strings(key);
    if (!texts) return std::unexpected(texts.error());
    std::vector<NamedRegex> out;
    for (size_t i = 0; i < texts->size(); ++i) {
      auto re = Pattern((*texts)[i], Where(key) + "[" + std::to_string(i) + "]");
      if (!re) return std::unexpected(re.error());
      out.push_back(std::move(*re));
    }
    return out;
  }
  Result<void> RejectUnknown() const {
    for (const auto& [key, value] : *table_) {
      if (!seen_.contains(key)) return Fail(Errc::kParse, Where(key) + ": unknown key");
    }
    return {};
  }
  const toml::table& raw() const { return *table_; }

 private:
  // Compiles one pattern; the automaton is built (and checked) now only with check_patterns.
  Result<NamedRegex> Pattern(const std::string& text, const std::string& where) const {
    auto re = NamedRegex::Compile(text);
    if (!re) return Fail(Errc::kParse, where + ": " + re.error().message());
    if (check_patterns_) {
      if (auto v = re->Validate(); !v)
        return Fail(Errc::kParse, where + ": " + v.error().message());
    }
    return re;
  }

  const toml::table* table_ = nullptr;
  std::string path_;
  bool check_patterns_;
  std::set<std::string> seen_;
};

// `var` is a declarator, not an expression, so it cannot be parenthesised.
// NOLINTBEGIN(bugprone-macro-parentheses)
#define POLYRUN_TRY(var, expr)                           \
  auto var##_r = (expr);                                 \
  if (!var##_r) return std::unexpected(var##_r.error()); \
  auto var = std::move(*var##_r)
// NOLINTEND(bugprone-macro-parentheses)

Result<std::map<std::string, std::string>> ParseEnv(Table& t) {
  std::map<std::string, std::string> out;
  for (const auto& [key, value] : t.raw()) {
    t.Get(key);
    if (!value.is_string()) return Fail(Errc::kParse, t.Where(key) + ": expected a string");
    out[key] = value.as_string().str;
  }
  return out;
}

Result<Recipe> ParseRecipe(Table& t, bool compile) {
  Recipe r;
  POLYRUN_TRY(command, t.Strings("command"));
  if (command.empty()) return Fail(Errc::kParse, t.Where("command") + ": required, non-empty");
  if (!command[0].starts_with("/") && !command[0].starts_with("{lang_dir}/")) {
    return Fail(
        Errc::kParse,
        t.Where("command") + ": the program must be an absolute path, got \"" + command[0] + "\"");
  }
  r.command = std::move(command);
  POLYRUN_TRY(env, t.Sub("env"));
  if (env) {
    POLYRUN_TRY(vars, ParseEnv(*env));
    r.env = std::move(vars);
  }
  POLYRUN_TRY(limits, t.Sub("limits"));
  if (limits) {
    POLYRUN_TRY(set, ParseLimitTable(limits->raw(), t.Where("limits")));
    r.limits = set;
  }
  if (compile) {
    POLYRUN_TRY(artifacts, t.Strings("artifacts"));
    POLYRUN_TRY(sources, t.Strings("sources"));
    r.artifacts = std::move(artifacts);
    r.source_extensions = std::move(sources);
    if (r.artifacts.empty())
      return Fail(Errc::kParse, t.Where("artifacts") + ": required for a compile recipe");
  }
  if (auto u = t.RejectUnknown(); !u) return std::unexpected(u.error());
  return r;
}

Result<ErrorRules> ParseErrors(Table& t) {
  ErrorRules e;
  POLYRUN_TRY(frame, t.Regex("frame"));
  POLYRUN_TRY(exception, t.Regex("exception"));
  POLYRUN_TRY(location, t.Regex("location"));
  POLYRUN_TRY(diagnostic, t.Regex("diagnostic"));
  e.frame = std::move(frame);
  e.exception = std::move(exception);
  e.location = std::move(location);
  e.diagnostic = std::move(diagnostic);
  POLYRUN_TRY(order, t.String("frame_order"));
  if (order) {
    if (*order == "innermost_first") {
      e.innermost_first = true;
    } else if (*order != "innermost_last") {
      return Fail(Errc::kParse,
                  t.Where("frame_order") + ": expected innermost_first or innermost_last");
    }
  }
  POLYRUN_TRY(position, t.String("exception_position"));
  if (position) {
    if (*position == "after_frames") {
      e.exception_position = ErrorRules::Position::kAfterFrames;
    } else if (*position == "before_frames") {
      e.exception_position = ErrorRules::Position::kBeforeFrames;
    } else if (*position == "anywhere") {
      e.exception_position = ErrorRules::Position::kAnywhere;
    } else {
      return Fail(Errc::kParse, t.Where("exception_position") +
                                    ": expected after_frames, before_frames or anywhere");
    }
  }
  POLYRUN_TRY(pick, t.String("location_pick"));
  if (pick) {
    if (*pick == "last") {
      e.location_last = true;
    } else if (*pick != "first") {
      return Fail(Errc::kParse, t.Where("location_pick") + ": expected first or last");
    }
  }
  if (const auto* off = t.Get("line_offset")) {
    if (!off->is_integer())
      return Fail(Errc::kParse, t.Where("line_offset") + ": expected an integer");
    e.line_offset = static_cast<int>(off->as_integer());
  }
  if (auto u = t.RejectUnknown(); !u) return std::unexpected(u.error());
  return e;
}

Result<Language> ParseRoot(Table& t) {
  Language lang;
  POLYRUN_TRY(id, t.String("id"));
  if (!id || id->empty()) return Fail(Errc::kParse, "id: required");
  for (char c : *id) {
    if (!(std::islower(static_cast<unsigned char>(c)) ||
          std::isdigit(static_cast<unsigned char>(c)) || c == '-' || c == '_')) {
      return Fail(Errc::kParse, "id: \"" + *id + "\" may use only a-z, 0-9, - and _");
    }
  }
  lang.id = *id;
  POLYRUN_TRY(name, t.String("name"));
  lang.name = name.value_or(lang.id);
  POLYRUN_TRY(aliases, t.Strings("aliases"));
  POLYRUN_TRY(extensions, t.Strings("extensions"));
  if (extensions.empty()) return Fail(Errc::kParse, "extensions: required, non-empty");
  lang.aliases = std::move(aliases);
  lang.extensions = std::move(extensions);
  POLYRUN_TRY(entry, t.String("entry"));
  lang.entry = entry.value_or("main." + lang.extensions.front());
  POLYRUN_TRY(pm, t.String("package_manager"));
  lang.package_manager = pm.value_or("");

  POLYRUN_TRY(version, t.Sub("version"));
  if (!version) return Fail(Errc::kParse, "version: required ([version] command and pattern)");
  POLYRUN_TRY(vcmd, version->Strings("command"));
  if (vcmd.empty() || vcmd[0].empty() || vcmd[0][0] != '/') {
    return Fail(Errc::kParse, "version.command: required, starting with an absolute path");
  }
  lang.version_command = std::move(vcmd);
  POLYRUN_TRY(vpat, version->Regex("pattern"));
  if (!vpat) return Fail(Errc::kParse, "version.pattern: required");
  lang.version_pattern = std::move(vpat);
  if (auto u = version->RejectUnknown(); !u) return std::unexpected(u.error());

  POLYRUN_TRY(sb, t.Sub("sandbox"));
  if (sb) {
    POLYRUN_TRY(binds, sb->Strings("binds"));
    POLYRUN_TRY(optional_binds, sb->Strings("optional_binds"));
    POLYRUN_TRY(syscalls, sb->Strings("syscalls"));
    for (auto& b : binds) {
      if (b.empty() || b[0] != '/')
        return Fail(Errc::kParse, "sandbox.binds: \"" + b + "\" is not absolute");
      lang.binds.push_back({b, false, ""});
    }
    for (auto& b : optional_binds) {
      if (b.empty() || b[0] != '/') {
        return Fail(Errc::kParse, "sandbox.optional_binds: \"" + b + "\" is not absolute");
      }
      lang.binds.push_back({b, true, ""});
    }
    lang.syscalls = std::move(syscalls);
    if (auto u = sb->RejectUnknown(); !u) return std::unexpected(u.error());
  }

  POLYRUN_TRY(compile, t.Sub("compile"));
  if (compile) {
    POLYRUN_TRY(recipe, ParseRecipe(*compile, true));
    lang.compile = std::move(recipe);
  }
  POLYRUN_TRY(run, t.Sub("run"));
  if (!run) return Fail(Errc::kParse, "run: required ([run] command)");
  POLYRUN_TRY(run_recipe, ParseRecipe(*run, false));
  lang.run = std::move(run_recipe);
  POLYRUN_TRY(check, t.Sub("check"));
  if (check) {
    POLYRUN_TRY(check_recipe, ParseRecipe(*check, false));
    lang.check = std::move(check_recipe);
  }
  POLYRUN_TRY(session, t.Sub("session"));
  if (session) {
    POLYRUN_TRY(session_recipe, ParseRecipe(*session, false));
    lang.session = std::move(session_recipe);
  }
  POLYRUN_TRY(warm, t.Sub("warm"));
  if (warm) {
    POLYRUN_TRY(warm_recipe, ParseRecipe(*warm, false));
    if (!warm_recipe.env.empty() || warm_recipe.limits.values != LimitSet{}.values) {
      return Fail(Errc::kParse,
                  "warm: takes only `command`; the environment and limits are [run]'s");
    }
    lang.warm = std::move(warm_recipe);
  }
  POLYRUN_TRY(zygote, t.Sub("zygote"));
  if (zygote) {
    POLYRUN_TRY(zygote_recipe, ParseRecipe(*zygote, false));
    if (!zygote_recipe.env.empty() || zygote_recipe.limits.values != LimitSet{}.values) {
      return Fail(Errc::kParse,
                  "zygote: takes only `command`; the environment and limits are [run]'s");
    }
    // A fork server holds an interpreter that runs the entry itself; a compiled language's run
    // stage runs the compiler's output ([warm] can: its command names that output).
    if (lang.compile)
      return Fail(Errc::kParse, "zygote: a language with [compile] cannot have one");
    lang.zygote = std::move(zygote_recipe);
  }
  POLYRUN_TRY(detect, t.Sub("detect"));
  if (detect) {
    POLYRUN_TRY(patterns, detect->Regexes("patterns"));
    lang.detect = std::move(patterns);
    if (auto u = detect->RejectUnknown(); !u) return std::unexpected(u.error());
  }
  POLYRUN_TRY(errors, t.Sub("errors"));
  if (errors) {
    POLYRUN_TRY(rules, ParseErrors(*errors));
    lang.errors = std::move(rules);
  }
  if (auto u = t.RejectUnknown(); !u) return std::unexpected(u.error());
  return lang;
}

#undef POLYRUN_TRY

}  // namespace

std::vector<sandbox::BindMount> BindsFor(const Language& lang, const Recipe& recipe) {
  std::vector<sandbox::BindMount> binds = lang.binds;
  if (recipe.uses_lang_dir) binds.push_back({lang.dir, false, kLangDirInSandbox});
  return binds;
}

std::string HostPath(const Language& lang, const std::string& sandbox_path) {
  const std::string inner = std::string(kLangDirInSandbox) + "/";
  if (!sandbox_path.starts_with(inner)) return sandbox_path;
  return lang.dir + "/" + sandbox_path.substr(inner.size());
}

Result<Language> ParseManifest(const std::string& toml_text, const std::string& origin,
                               bool check_patterns) {
  toml::value root;
  try {
    std::istringstream in(toml_text);
    root = toml::parse(in, origin);
  } catch (const std::exception& e) {
    return Fail(Errc::kParse, origin + ": " + e.what());
  }
  Table t(root, "", check_patterns);
  if (!t.valid()) return Fail(Errc::kParse, origin + ": not a TOML table");
  auto lang = ParseRoot(t);
  if (!lang) {
    Error e = lang.error();
    e.context = origin + ": " + e.context;
    return std::unexpected(e);
  }
  return lang;
}

}  // namespace polyrun::languages
