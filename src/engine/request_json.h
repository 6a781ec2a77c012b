#pragma once

// The native execution request on the wire (POST /v1/executions and the `init` of the native
// WebSocket). One JSON object; every key but `language` and one of `code`/`files` is optional:
//
//   {
//     "language": "python",                 // id, alias or extension; a non-empty string
//     "version": "3.11",                    // a prefix of the installed version; "*" = any
//     "code": "print(1)",                   // the program, as one file named by the language;
//     "files": [                            //   or the files, exactly one of the two
//       {"name": "main.py",                 // a clean relative path ("lib/util.py"), unique
//        "content": "print(1)",
//        "encoding": "utf8"}                // "utf8" (default) or "base64" for binary bytes
//     ],
//     "entry": "main.py",                   // with files only: the file to run (default: the
//                                           //   first)
//     "stdin": "…",                         // the program's standard input
//     "args": ["a", "b"],                   // its arguments, never seen by a shell
//     "env": {"K": "V"},                    // extra environment variables
//     "limits": {"wall_time": "5s", "memory": 268435456, …},   // see below
//     "compile_limits": {…},                // the same keys, for the compile stage
//     "network": false,                     // ask for network access (the operator decides)
//     "labels": {"artifact_id": "…"},       // free-form string → string, kept with the result
//     "session_id": "se_…"                  // run `code` in this live session (see below)
//   }
//
// With `session_id`, `code` runs in that session: `language` may be left out (the session's),
// and files, entry, args, env, compile_limits and network are refused (they belong to the
// session's creation, ParseSessionRequest).
//
// Limits are wall_time, cpu_time, memory, processes, output, file_size, open_files and disk
// (docs/options.md). A number is in base units — milliseconds, bytes or a count; a string
// uses the CLI's syntax ("5s", "256M", "64"). Unknown keys anywhere a key is named here are
// refused, so a typo never silently falls back to a default; a key whose value is null counts
// as left out.
//
// A refused request gets HTTP 400 (`invalid_request`) or 413 (`too_large`, over a RequestCaps
// cap) and the body `{"error": {"code", "field", "message"}}`; `field` is the JSON path of the
// offending value ("files[2].content", "limits.wall_time"; "" for the body itself) and
// `message` starts with it.

#include <cstddef>
#include <expected>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "engine/request.h"
#include "engine/session.h"

namespace polyrun::engine {

// Size caps the caller enforces; a request over one is refused naming the field (413).
struct RequestCaps {
  size_t max_files = 64;            // files[] entries
  size_t max_code_bytes = 4 << 20;  // sum of all file contents (or `code`), decoded
  size_t max_stdin_bytes = 4 << 20;
  size_t max_args = 256;
  size_t max_arg_bytes = 64 << 10;  // total of args
  size_t max_env = 256;
  size_t max_labels = 32;
  size_t max_label_bytes = 1024;  // per key and per value
};

// Why a wire request was refused. `code` is stable: "invalid_request" (HTTP 400) or
// "too_large" (HTTP 413). `field` is a JSON path ("files[2].content", "limits.wall_time").
struct RequestError {
  std::string code;
  std::string field;
  std::string message;
  int http_status = 400;
};

// Validates and converts a native request body (the shape above). Pure: the language, version,
// file paths against the sandbox's rules and limits against the operator's ceiling are checked
// again by Engine::Run, which knows the registry and the configuration.
std::expected<ExecutionRequest, RequestError> RequestFromJson(const nlohmann::json& body,
                                                              const RequestCaps& caps);

// The byte and count caps over an already decoded request (files, code, stdin, args, env,
// labels); the first one exceeded, as a "too_large" error. RequestFromJson applies it; other
// wire formats (Piston) that build an ExecutionRequest themselves apply it too.
std::optional<RequestError> CheckRequestCaps(const ExecutionRequest& request,
                                             const RequestCaps& caps);

// The body of POST /v1/sessions (docs/api.md):
//
//   {"language": "python", "version": "3.11", "limits": {…}, "env": {…}, "files": [{…}],
//    "labels": {…}, "lifetime": "1h" | ms, "idle_timeout": "15m" | ms,
//    "exclusive": "<label name>", "network": false}
//
// `language` is required; the rest have the same shapes and rules as in an execution request.
// `exclusive` names one of the session's labels that no other live session may hold with the
// same value. Errors are RequestError, as RequestFromJson's.
struct SessionCreateRequest {
  SessionRequest request;
  std::string exclusive;
};
std::expected<SessionCreateRequest, RequestError> ParseSessionRequest(const nlohmann::json& body,
                                                                      const RequestCaps& caps);

// The body of POST /v1/sessions/{id}/execute: {"code", "stdin"?, "limits"?, "labels"?}, as an
// ExecutionRequest with session_id = `session_id` (the language is left for the caller to set).
// Per-execution limits are wall_time, cpu_time and output only; the others are the session's.
std::expected<ExecutionRequest, RequestError> SessionExecutionFromJson(
    const nlohmann::json& body, const std::string& session_id, const RequestCaps& caps);

// {"error": {"code", "field", "message"}}
nlohmann::json ToJson(const RequestError& e);

}  // namespace polyrun::engine
