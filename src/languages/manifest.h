#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "languages/limits.h"
#include "languages/named_regex.h"
#include "sandbox/spec.h"
#include "util/error.h"

namespace polyrun::languages {

// How to read a language's error output. All patterns are applied line by line to stderr.
struct ErrorRules {
  // A stack frame: groups file, line, column?, function?.
  std::optional<NamedRegex> frame;
  bool innermost_first = false;  // true for "at f (file:line:col)" style traces
  // The exception line: groups name, message?.
  std::optional<NamedRegex> exception;
  enum class Position {
    kAfterFrames,
    kBeforeFrames,
    kAnywhere
  } exception_position = Position::kAfterFrames;
  // The error's own location when it is not a frame (syntax errors): groups file, line,
  // column?, message?. Overrides the innermost user frame.
  std::optional<NamedRegex> location;
  bool location_last = false;  // use the last match instead of the first
  // Compiler diagnostics: groups file, line, column?, severity?, message.
  std::optional<NamedRegex> diagnostic;
  // Lines a recipe adds in front of the user's code; subtracted from reported lines.
  int line_offset = 0;
};

// Where a language's own folder (its recipes) appears inside the sandbox when a command or env
// value names {lang_dir}; the version command, run on the host, gets the host path instead.
inline constexpr const char* kLangDirInSandbox = "/lang";

// A compile, run or check recipe. Placeholders in `command`: {entry} (the entry file), {sources}
// (every file whose extension is in source_extensions, expanded to several arguments),
// {args} (the user's arguments, expanded), {lang_dir} (see kLangDirInSandbox).
struct Recipe {
  std::vector<std::string> command;
  std::map<std::string, std::string> env;
  LimitSet limits;
  std::vector<std::string> artifacts;          // compile: files carried to the run stage
  std::vector<std::string> source_extensions;  // compile: which files are {sources}
  bool uses_lang_dir = false;  // names {lang_dir}: its sandbox gets the folder at /lang
};

struct Language;
// The read-only binds of one recipe's sandbox: the language's, plus its folder at /lang when
// the recipe uses {lang_dir}.
std::vector<sandbox::BindMount> BindsFor(const Language& lang, const Recipe& recipe);
// Where a recipe's path is on the host: below kLangDirInSandbox, in the language's folder;
// anything else is the same path.
std::string HostPath(const Language& lang, const std::string& sandbox_path);

struct Language {
  std::string id;
  std::string name;
  std::vector<std::string> aliases;
  std::vector<std::string> extensions;  // without dot: "py"
  std::string entry;                    // default entry file name for inline code: "main.py"
  std::vector<std::string> version_command;
  std::optional<NamedRegex> version_pattern;  // group "version"
  std::vector<sandbox::BindMount> binds;
  std::vector<std::string> syscalls;  // allowed on top of the default seccomp profile
  std::optional<Recipe> compile;
  Recipe run;
  // The analyzer: run in the sandbox with the files, prints the check protocol (docs/languages.md)
  // on stdout. {entry} is the file to check, {sources} every file of the language.
  std::optional<Recipe> check;
  // Content detection for files without a known extension or shebang: each pattern that
  // matches some line scores one point.
  std::vector<NamedRegex> detect;
  ErrorRules errors;
  // The session driver (docs/sessions.md): started once per session, speaks the driver
  // protocol. Absent: the language has no sessions.
  std::optional<Recipe> session;
  // The warm bootstrap (docs/performance.md): started ahead of need in a pool sandbox; loads the
  // interpreter, writes 'R' on fd 3 and closes it, then reads one run from stdin and runs it as
  // [run] would. Absent: the language's runs are always cold.
  std::optional<Recipe> warm;
  // The fork server (docs/performance.md, "Zygotes"): started once in a sandbox of its own,
  // keeps the interpreter initialised and forks each run, which then reads the run from stdin
  // as the warm bootstrap does. Absent: no zygote for the language.
  std::optional<Recipe> zygote;
  std::string package_manager;
  std::string dir;  // the folder the manifest came from
};

// Parses and validates one manifest.toml. Unknown keys, wrong types, bad regexes and bad
// limit values are errors that name the key; `origin` prefixes every message. Building the
// regex automata is the costly part: with check_patterns false it is deferred to first use
// (a one-shot CLI run), and a bad pattern then matches nothing instead of failing the load.
Result<Language> ParseManifest(const std::string& toml_text, const std::string& origin,
                               bool check_patterns = true);

}  // namespace polyrun::languages
