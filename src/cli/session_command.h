#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

// `polyrun session …`: a client of `polyrun serve`'s /v1/sessions API (docs/cli.md,
// docs/api.md). Sessions live in the server process; these commands only talk to it.
namespace polyrun::cli {

// Exit code when the server cannot be reached (sysexits' EX_UNAVAILABLE).
inline constexpr int kExitUnavailable = 69;

struct SessionOptions {
  enum class Action { kCreate, kExec, kInterrupt, kRestart, kClose, kList };
  Action action = Action::kList;
  std::string server;   // base URL; empty: http://127.0.0.1:8080
  std::string api_key;  // empty: none
  bool json = false;    // print the server's JSON object instead of the human form

  std::string id;  // exec, interrupt, restart, close

  // create
  std::string language;
  std::vector<std::string> labels;  // "KEY=VALUE", create and exec
  std::vector<std::string> env;     // "KEY=VALUE"
  std::vector<std::string> files;   // copied into the session's /work
  std::string lifetime;             // duration text ("1h")
  std::string idle_timeout;
  std::string exclusive;  // label name
  // create: any limit; exec: the per-execution ones. Limit name -> text, from the flags.
  std::map<std::string, std::string> limits;

  // exec: exactly one of code, a file to read the code from, or "-" (stdin)
  std::optional<std::string> code;
  std::string code_file;
  std::optional<std::string> input;  // answers to the code's input requests, one line each
};

// Returns the process exit code: for exec, `polyrun run`'s mapping (exit_codes.h); 2 for bad
// flags or a 4xx reply, 70 for a 5xx reply or an unusable reply, kExitUnavailable when the
// server cannot be reached.
int SessionCommand(const SessionOptions& options);

}  // namespace polyrun::cli
