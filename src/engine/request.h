#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "languages/limits.h"

namespace polyrun::engine {

struct RequestFile {
  std::string name;     // relative path below the work dir
  std::string content;  // raw bytes (already decoded from base64 where the wire used it)
};

// DESIGN §4 ExecutionRequest. Either `code` (one file named after the language's entry) or
// `files` (with `entry` naming the file to run; the first file when empty).
struct ExecutionRequest {
  std::string language;  // id, alias or extension
  std::string version;   // optional; must match the installed version's prefix when given
  std::string code;
  std::vector<RequestFile> files;
  std::string entry;
  std::string stdin_data;
  int stdin_fd = -1;  // library/CLI only: pump this descriptor to the program's stdin
  std::vector<std::string> args;
  std::map<std::string, std::string> env;
  languages::LimitSet limits;
  languages::LimitSet compile_limits;
  bool network = false;
  std::map<std::string, std::string> labels;
  int cancel_fd = -1;  // library only: readable => cancel
  // Run `code` in this live session (its language, files and env) instead of a new sandbox.
  std::string session_id;

  // Set by whoever admitted the request earlier and already published its `queued` event (the
  // ExecutionService); Run then continues that execution. Empty id: Run assigns all three.
  std::string id;
  std::string created_at;
  std::chrono::steady_clock::time_point queued_at;
};

}  // namespace polyrun::engine
