#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "languages/error_report.h"
#include "languages/limits.h"

namespace polyrun::engine {

// DESIGN §4 Status. Names on the wire are StatusName()'s, stable from here on.
enum class Status {
  kQueued,
  kRunning,
  kOk,
  kRuntimeError,
  kCompileError,
  kTimeout,
  kMemoryLimit,
  kOutputLimit,
  kCancelled,
  kRejected,
  kInternalError,
};
std::string_view StatusName(Status s);
std::optional<Status> StatusFromName(std::string_view name);

struct Usage {
  uint64_t wall_ms = 0;
  uint64_t cpu_ms = 0;
  uint64_t memory_bytes = 0;  // peak
  // How the code's process started: "cold" (a sandbox built for it), "prebuilt" (in a sandbox
  // built ahead of it), "warm" (a sandbox taken from a warm pool, its interpreter already
  // loaded), "zygote" (forked from a language's fork server, docs/performance.md) or "session"
  // (a live session's driver).
  std::string start;
};

// One entry of a result's ordered outputs: a run of stream text, or a display (rich output).
struct OutputChunk {
  std::string stream;  // "stdout" or "stderr"; empty for a display
  std::string text;
  uint64_t t_ms = 0;       // since the execution was queued
  nlohmann::json display;  // a display's {"data": MIME bundle, "metadata": {…}}; else null
};

struct StageResult {
  Status status = Status::kOk;
  std::optional<int> exit_code;
  int signal = 0;
  std::string stdout_text, stderr_text;
  bool stdout_truncated = false, stderr_truncated = false;
  std::vector<languages::Diagnostic> diagnostics;
  Usage usage;
  bool cached = false;  // compile: the artifacts came from the artifact cache, nothing ran
};

struct ExecutionResult {
  std::string id;
  std::string language;
  std::string version;
  Status status = Status::kQueued;
  std::string limit;   // which limit ended the run: "wall_time", "cpu_time", "memory", "output"
  std::string reason;  // one sentence: why the run ended as it did
  std::optional<int> exit_code;
  int signal = 0;
  std::string stdout_text, stderr_text;
  bool stdout_truncated = false, stderr_truncated = false;
  std::vector<OutputChunk> outputs;
  std::optional<languages::ErrorInfo> error;
  std::optional<StageResult> compile;
  Usage usage;
  languages::LimitSet limits;
  languages::LimitSet compile_limits;
  std::map<std::string, std::string> labels;
  std::string created_at, started_at, finished_at;  // RFC 3339, UTC, milliseconds
  // Sessions: the session that ran it, and the MIME bundle of the cell's last expression.
  std::string session_id;
  nlohmann::json result;  // null when there is none
};

}  // namespace polyrun::engine
