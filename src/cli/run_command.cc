#include "cli/run_command.h"

#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>

#include "cli/exit_codes.h"
#include "cli/source_files.h"
#include "engine/engine.h"
#include "engine/result_json.h"
#include "util/files.h"
#include "util/unique_fd.h"

namespace polyrun::cli {

namespace {

int g_cancel_fd = -1;

void OnInterrupt(int) {
  uint64_t one = 1;
  if (g_cancel_fd >= 0) (void)!::write(g_cancel_fd, &one, sizeof one);
}

int Usage(const std::string& message) {
  std::cerr << "polyrun: " << message << "\n";
  return kExitUsage;
}

std::string ReadAllStdin() {
  std::string out;
  char buf[65536];
  ssize_t n;
  while ((n = ::read(0, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  return out;
}

}  // namespace

int ExitCodeFor(const engine::ExecutionResult& r) {
  using engine::Status;
  switch (r.status) {
    case Status::kOk:
    case Status::kRuntimeError:
      if (r.signal != 0) return 128 + r.signal;
      return r.exit_code.value_or(kExitInternal);
    case Status::kCompileError:
      return kExitCompileError;
    case Status::kTimeout:
      return kExitTimeout;
    case Status::kMemoryLimit:
      return kExitMemoryLimit;
    case Status::kOutputLimit:
      return kExitOutputLimit;
    case Status::kCancelled:
      return kExitCancelled;
    case Status::kRejected:
      return kExitUsage;
    default:
      return kExitInternal;
  }
}

int RunCommand(const RunOptions& o, const SettingsFlags& settings) {
  engine::ExecutionRequest req;
  req.language = o.language;
  bool pump_terminal = false;
  const bool code_from_stdin = o.files.size() == 1 && o.files[0] == "-";
  if (o.code && !o.files.empty()) return Usage("give either -c CODE or files, not both");
  if (o.code) {
    if (o.language.empty()) return Usage("-c needs -l LANG");
    req.code = *o.code;
    pump_terminal = true;
  } else if (code_from_stdin) {
    if (o.language.empty()) return Usage("reading code from stdin (-) needs -l LANG");
    req.code = ReadAllStdin();
  } else if (!o.files.empty()) {
    if (std::find(o.files.begin(), o.files.end(), "-") != o.files.end()) {
      return Usage("\"-\" (code from stdin) cannot be mixed with files");
    }
    auto files = ReadSourceFiles(o.files);
    if (!files) return Usage(files.error().message());
    req.files = std::move(*files);
    req.entry = req.files.front().name;
    pump_terminal = true;
  } else {
    return Usage("nothing to run: give FILE..., -c CODE or -l LANG -");
  }

  if (o.input && !o.input_file.empty()) return Usage("give --input or --input-file, not both");
  if (o.input) {
    req.stdin_data = *o.input;
  } else if (!o.input_file.empty()) {
    auto text = ReadTrustedFile(o.input_file, 256u << 20);
    if (!text)
      return Usage("cannot read --input-file " + o.input_file + ": " + text.error().message());
    req.stdin_data = std::move(*text);
  } else if (pump_terminal) {
    req.stdin_fd = 0;
  }
  for (const auto& a : o.args) req.args.push_back(a);
  for (const auto& kv : o.env) {
    auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0)
      return Usage("--env \"" + kv + "\": expected KEY=VALUE");
    req.env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  for (const auto& [name, text] : o.limits) {
    if (auto r = req.limits.Set(name, text); !r) return Usage(r.error().message());
  }

  auto config = LoadSettings(settings);
  if (!config) return Usage(config.error().message());
  if (req.language.empty()) {
    // The language comes from the first file's extension; the registry resolves it.
    const std::string& first = req.files.front().name;
    auto dot = first.rfind('.');
    if (dot == std::string::npos)
      return Usage(first + ": no extension; say the language with -l LANG");
    req.language = first.substr(dot);
  }
  auto engine = engine::Engine::Create(
      *config, {.check_patterns = false, .only_language = req.language, .netns_ready = 0});
  if (!engine) {
    std::cerr << "polyrun: " << engine.error().message() << "\n";
    return kExitInternal;
  }
  if (req.language[0] == '.' && !(*engine)->registry().FindByExtension(req.language)) {
    return Usage(req.files.front().name + ": unknown file extension \"" + req.language +
                 "\"; say the language with -l LANG (see `polyrun languages`)");
  }

  UniqueFd cancel(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  g_cancel_fd = cancel.get();
  req.cancel_fd = cancel.get();
  struct sigaction sa {};
  sa.sa_handler = OnInterrupt;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  engine::EventSink sink;
  if (!o.json) {
    sink = [](const engine::Event& e) {
      using K = engine::Event::Kind;
      if (e.kind == K::kStdout) {
        (void)WriteAll(1, e.data.data(), e.data.size());
      } else if (e.kind == K::kStderr || e.kind == K::kCompileOutput) {
        (void)WriteAll(2, e.data.data(), e.data.size());
      }
    };
  }
  engine::ExecutionResult result = (*engine)->Run(req, sink);
  g_cancel_fd = -1;

  if (o.json) {
    std::cout << engine::ToJson(result).dump(2, ' ', false,
                                             nlohmann::json::error_handler_t::replace)
              << "\n"
              << std::flush;
    if (result.status == engine::Status::kRejected) return kExitUsage;
    if (result.status == engine::Status::kInternalError) return kExitInternal;
    return 0;
  }
  using engine::Status;
  if (result.status == Status::kRejected) return Usage(result.reason);
  if (result.status != Status::kOk && result.status != Status::kRuntimeError) {
    std::cerr << "polyrun: " << engine::StatusName(result.status) << ": " << result.reason << "\n";
  }
  return ExitCodeFor(result);
}

}  // namespace polyrun::cli
