#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "languages/registry.h"

namespace polyrun::languages {

// The analyzer's findings for one file (`polyrun check`): what the file is and whether it
// would load, found by the language's [check] recipe without running the program.
struct SyntaxError {
  std::string file;
  int line = 0;
  int column = 0;  // 0: the parser gives none
  std::string message;
};

struct ImportInfo {
  std::string name;
  int line = 0;
  bool available = false;
};

struct FileCheck {
  std::string file;
  std::string language;     // id; empty when it could not be told
  std::string detected_by;  // "request", "extension", "shebang" or "content"
  std::vector<SyntaxError> syntax_errors;
  std::vector<ImportInfo> imports;  // sorted by name, unique
  std::string problem;              // why the file could not be checked; empty when it was
};

// How a file's language was told. `entry` is null when nothing matched.
struct Detection {
  const LanguageEntry* entry = nullptr;
  std::string how;
};

// Extension first, then a `#!` line (the interpreter's base name, through `env` and its -S,
// with trailing version digits dropped as a fallback: python3.11 → python3 → python), then the
// languages' [detect] patterns (most matching patterns wins; a tie is no answer).
Detection DetectLanguage(const Registry& registry, std::string_view file_name,
                         std::string_view content);

// The interpreter a `#!` first line names ("" when none): "#!/usr/bin/env -S node --x" → "node".
std::string ShebangInterpreter(std::string_view content);

// Reads the check protocol (docs/languages.md) from a recipe's stdout into `out`. Returns the
// number of records read. Imports end up sorted and unique (first line kept).
size_t ParseCheckOutput(std::string_view text, FileCheck& out);

}  // namespace polyrun::languages
