#pragma once

// The Piston v2 API (github.com/engineer-man/piston, api/src/api/v2.js and api/src/job.js) as
// pure translations to and from the engine's model, for clients written against Piston:
// POST /api/v2/execute, GET /api/v2/runtimes and the WebSocket /api/v2/connect. Sockets, routing
// and threads belong to the server; nothing here blocks or does I/O.
//
// Where this deliberately differs from Piston:
// - `files[].encoding` other than utf8/base64/hex is refused (Piston silently reads it as utf8);
//   a content that is not valid base64/hex is refused (Node decodes up to the first bad
//   character).
// - `version` ranges ("^3.10", ">=3") are refused: the engine matches a version prefix, so
//   "*", "x", "3", "3.x" and "3.10.4" work, and "3.1" also matches "3.10".
// - Types Piston leaves to crash later (`args` not an array of strings, `stdin` not a string)
//   are refused up front with a 400, and RequestCaps apply (413).
// - A WebSocket message of an unknown `type` is an error (Piston ignores it).

#include <chrono>
#include <expected>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/events.h"
#include "engine/request.h"
#include "engine/request_json.h"
#include "engine/result.h"

namespace polyrun::server {

// A refused Piston request, answered as Piston does: `http_status` (400, or 413 over a cap)
// with the body {"message": message}. The message names the field ("files[1].content is
// required as a string").
struct PistonError {
  int http_status = 400;
  std::string message;
};
nlohmann::json ToJson(const PistonError& e);  // {"message": …}

// The body of POST /api/v2/execute (and of the WebSocket `init`):
//   language  required string: id or alias
//   version   required string: "*"/"x" (any) or a version prefix, "N.x" wildcards allowed
//   files     required non-empty array of {name?, content, encoding?: "utf8"|"base64"|"hex"};
//             at least one utf8 file; the first utf8 file is the one run (Piston's job.js runs
//             code_files[0]) and is moved to the front of ExecutionRequest::files
//   stdin     optional string; like Piston, a trailing newline is added when missing
//   args      optional array of strings
//   run_timeout, compile_timeout     wall time, ms          → limits / compile_limits wall_time
//   run_cpu_time, compile_cpu_time   CPU time, ms           → … cpu_time
//   run_memory_limit, compile_memory_limit  bytes           → … memory
// A limit that is absent, null or 0 is left unset (Piston treats 0 as "not given"), as is a
// negative memory limit (Piston's -1, "no limit"): the operator's defaults and ceiling apply.
// Other negative values are refused; fractional values are truncated to whole ms/bytes.
// Unknown keys are ignored, as Piston ignores them.
//
// The entry file's name may be left empty when the client gave none: the caller fills it in with
// the language's default entry name (Language::entry) before running. Other unnamed files get
// Piston's "file<i>.code" (i: the index in the request).
std::expected<engine::ExecutionRequest, PistonError> PistonExecuteFromJson(
    const nlohmann::json& body, const engine::RequestCaps& caps);

// A `rejected` result is a bad request in Piston's terms (nothing ran): the server answers it
// with this 400 instead of a result. nullopt for every other status.
std::optional<PistonError> PistonRejection(const engine::ExecutionResult& result);

// The response of POST /api/v2/execute: {language, version, run, compile?}, each stage
// {stdout, stderr, output, code, signal, message, status, cpu_time, wall_time, memory}.
// `output` is stdout and stderr in arrival order (result.outputs); the compile stage keeps no
// interleaving, so its `output` is its stdout followed by its stderr. `compile` is present only
// for languages that compiled; when the compile stage failed, `run` repeats it (Piston's
// backward compatibility for clients that read only `run`). Times are ms, memory is bytes.
//
// Status mapping (ours → Piston `status`, `signal`, `code`):
//   ok              null; signal null; code = exit code (0)
//   runtime_error   "SG" when a signal killed it (signal named), else "RE" (code = exit code)
//   compile_error   "RE" on the compile stage ("SG" when the compiler died on a signal)
//   timeout         "TO"; signal "SIGKILL"; code null (wall or CPU: Piston has one letter)
//   memory_limit    "SG" with the signal that killed it (SIGKILL); Piston, running isolate,
//                   reports an OOM kill as dying on a signal and has no letter of its own
//   output_limit    "OL" (stdout over the limit), "EL" when only stderr was cut; signal
//                   "SIGKILL"; code null
//   cancelled       "SG" with the signal that ended it (SIGKILL: the whole sandbox dies)
//   internal_error  "XX"
//   rejected        "XX" (the server normally answers PistonRejection's 400 instead)
//   queued/running  "XX" (not a final status; never rendered by a correct caller)
// `message` is null for ok, else our `reason` (or the error's summary when there is none).
nlohmann::json PistonResultToJson(const engine::ExecutionResult& result);

// GET /api/v2/runtimes: [{language, version, aliases}].
struct PistonRuntime {
  std::string language, version;
  std::vector<std::string> aliases;
};
nlohmann::json PistonRuntimesToJson(const std::vector<PistonRuntime>& runtimes);

// ---- WebSocket /api/v2/connect ---------------------------------------------------------------
//
// Client → server: {"type": "init", <the execute body>} (its stdin is discarded: input comes as
// data messages), {"type": "data", "stream": "stdin", "data": "…"}, {"type": "signal",
// "signal": "SIGKILL"}. Server → client: {"type": "runtime", language, version}, {"type":
// "stage", "stage": "compile"|"run"}, {"type": "data", "stream": "stdout"|"stderr", "data"},
// {"type": "exit", "stage", "code", "signal"}, {"type": "error", "message"}.
//
// Close codes, as in Piston's v2.js (reason strings are Piston's too):
inline constexpr int kPistonAlreadyInitialized = 4000;  // a second init
inline constexpr int kPistonInitTimeout = 4001;         // no init within kPistonInitDeadline
inline constexpr int kPistonNotifiedError = 4002;       // an `error` message was sent first
inline constexpr int kPistonNotInitialized = 4003;      // data/signal before init
inline constexpr int kPistonStdinOnly = 4004;           // data for a stream other than stdin
inline constexpr int kPistonInvalidSignal = 4005;       // a signal name we do not know
inline constexpr int kPistonJobCompleted = 4999;        // the run ended normally
inline constexpr std::chrono::seconds kPistonInitDeadline{1};

struct PistonClose {
  int code = 0;
  std::string reason;
};

// What the socket code does after feeding the session one input, in this order: send every
// message of `send` (as text frames), start `start` (an interactive execution, stdin left open),
// write `stdin_data` to the program's stdin, deliver `signal` (a signal number; the engine can
// only cancel, which kills the whole sandbox), then close with `close` when set.
//
// Messages may hold the program's raw bytes: serialise them with
// nlohmann::json::error_handler_t::replace (invalid UTF-8 becomes U+FFFD, as Node's toString).
struct PistonStep {
  std::vector<nlohmann::json> send;
  std::optional<engine::ExecutionRequest> start;
  std::optional<std::string> stdin_data;
  std::optional<int> signal;
  std::optional<PistonClose> close;
};

// The protocol of one /api/v2/connect socket as a state machine: awaiting init → running →
// closed. Not thread-safe: the socket code serialises calls (client messages, the init
// deadline, and the execution's events in their order). After `close` every input is ignored.
class PistonSession {
 public:
  explicit PistonSession(engine::RequestCaps caps) : caps_(caps) {}

  // One text frame from the client.
  PistonStep OnMessage(std::string_view text);
  // Call once kPistonInitDeadline after the socket opened: closes with 4001 if no init came.
  PistonStep OnInitDeadline();
  // One event of the started execution, in order; `finished` ends the session: the last exit
  // message and close 4999, or for `rejected`/`internal_error` an error message and 4002.
  PistonStep OnEvent(const engine::Event& event);
  // The execution could not be started (queue full, shutting down): error message and 4002.
  PistonStep Fail(std::string_view message);

  bool closed() const { return state_ == State::kClosed; }

 private:
  enum class State { kAwaitingInit, kRunning, kClosed };
  PistonStep Close(PistonStep step, int code, std::string reason);
  PistonStep Error(std::string_view message);

  engine::RequestCaps caps_;
  State state_ = State::kAwaitingInit;
  std::string language_;      // as the client asked, for the runtime message
  bool run_started_ = false;  // a "stage: run" went out, so the end sends a run exit
  size_t stdin_bytes_ = 0;    // written so far, against caps_.max_stdin_bytes
};

}  // namespace polyrun::server
