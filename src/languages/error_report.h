#pragma once

#include <optional>
#include <string>
#include <vector>

#include "languages/manifest.h"

namespace polyrun::languages {

struct Frame {
  std::string file;  // relative to the work dir: "main.py", "lib/util.py"
  int line = 0;
  int column = 0;  // 0: not reported
  std::string function;
};

// DESIGN §4 Error. line/column point into the user's own file.
struct ErrorInfo {
  std::string type;  // "exception", "signal", "exit"
  std::string name;
  std::string message;
  std::string file;
  int line = 0;
  int column = 0;
  std::vector<Frame> traceback;  // outermost first; only frames in the user's files
};

struct Diagnostic {
  std::string file;
  int line = 0;
  int column = 0;
  std::string severity;  // "error", "warning", "note"
  std::string message;
};

// Reads a runtime error out of stderr using the language's rules. nullopt when nothing in
// stderr looks like an error report. `work_dir` is the sandbox path of the user's files.
std::optional<ErrorInfo> ParseRuntimeError(const ErrorRules& rules, const std::string& stderr_text,
                                           const std::string& work_dir = "/work");

// Every compiler diagnostic, in order.
std::vector<Diagnostic> ParseDiagnostics(const ErrorRules& rules, const std::string& output,
                                         const std::string& work_dir = "/work");

// "main.py" for "/work/main.py"; "" for files that are not the user's (/usr/lib/…, node:…).
std::string UserFile(const std::string& path, const std::string& work_dir = "/work");

}  // namespace polyrun::languages
