#include "server/piston.h"

#include <algorithm>
#include <array>
#include <csignal>
#include <cstring>
#include <set>

#include "engine/result_json.h"
#include "sandbox/sandbox.h"
#include "util/base64.h"
#include "util/options.h"
#include "util/strings.h"

namespace polyrun::server {

namespace {

using engine::Status;
using languages::Limit;
using nlohmann::json;

std::unexpected<PistonError> Bad(std::string message) {
  return std::unexpected(PistonError{400, std::move(message)});
}

// Names as Piston reports them (its globals.SIGNALS: "SIGKILL", "SIGSEGV", …).
std::string SignalName(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return abbrev ? std::string("SIG") + abbrev : std::to_string(sig);
}

std::optional<int> SignalNumber(std::string_view name) {
  for (int sig = 1; sig < 32; ++sig) {
    const char* abbrev = sigabbrev_np(sig);
    if (abbrev != nullptr && name == std::string("SIG") + abbrev) return sig;
  }
  return std::nullopt;
}

// Node's Buffer.from(s, "hex") stops at the first bad pair; refusing says what went wrong.
std::expected<std::string, std::string> HexDecode(std::string_view text) {
  if (text.size() % 2 != 0) return std::unexpected("hex: odd number of digits");
  auto digit = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(text.size() / 2);
  for (size_t i = 0; i < text.size(); i += 2) {
    int hi = digit(text[i]);
    int lo = digit(text[i + 1]);
    if (hi < 0 || lo < 0) {
      return std::unexpected("hex: invalid digit at offset " + std::to_string(hi < 0 ? i : i + 1));
    }
    out.push_back(static_cast<char>(hi * 16 + lo));
  }
  return out;
}

// Piston's `version` is a semver selector; the engine matches a prefix of the installed version.
std::expected<std::string, PistonError> VersionPrefix(const std::string& version) {
  if (version.find_first_of("^~<>=| ") != std::string::npos) {
    return Bad("version \"" + version +
               "\" is a range; give \"*\" or a version prefix such as \"3.10\"");
  }
  std::vector<std::string> parts = Split(version, '.');
  std::string prefix;
  for (const auto& part : parts) {
    if (part == "*" || part == "x" || part == "X") return prefix;  // "3.x" → "3."
    prefix += part + ".";
  }
  return version;
}

struct PistonLimit {
  const char* key;
  bool compile;
  Limit limit;
};
constexpr std::array<PistonLimit, 6> kPistonLimits = {{
    {"run_timeout", false, Limit::kWallTime},
    {"compile_timeout", true, Limit::kWallTime},
    {"run_cpu_time", false, Limit::kCpuTime},
    {"compile_cpu_time", true, Limit::kCpuTime},
    {"run_memory_limit", false, Limit::kMemory},
    {"compile_memory_limit", true, Limit::kMemory},
}};

std::expected<void, PistonError> ApplyLimit(const json& body, const PistonLimit& pl,
                                            engine::ExecutionRequest& req) {
  auto it = body.find(pl.key);
  if (it == body.end() || it->is_null()) return {};
  const std::string key = pl.key;
  if (!it->is_number()) return Bad("If specified, " + key + " must be a number");
  if (*it == 0) return {};  // Piston: 0 is "not given"
  uint64_t value = 0;
  if (it->is_number_unsigned()) {
    value = it->get<uint64_t>();
  } else {
    const double d = it->get<double>();
    if (d < 0) {
      if (pl.limit == Limit::kMemory) return {};  // Piston's -1: no limit of the client's own
      return Bad(key + " must be non-negative");
    }
    // Whole ms/bytes; 0.5 becomes 0 and is refused as below the minimum.
    value = d >= 0x1p64 ? UINT64_MAX : static_cast<uint64_t>(d);
  }
  const OptionDecl& decl = languages::DeclOf(pl.limit);
  auto checked = CheckOptionNumber(decl, value);
  if (!checked) {
    std::string message = checked.error().message();
    const std::string prefix = std::string(decl.name) + ": ";
    if (message.starts_with(prefix)) message = message.substr(prefix.size());
    return Bad(key + ": " + message);
  }
  (pl.compile ? req.compile_limits : req.limits)[pl.limit] = *checked;
  return {};
}

std::expected<std::vector<engine::RequestFile>, PistonError> FilesFrom(
    const json& files, const engine::RequestCaps& caps) {
  if (!files.is_array()) return Bad("files is required as an array");
  if (files.size() > caps.max_files) {
    return std::unexpected(PistonError{413, "files: " + std::to_string(files.size()) +
                                                " files exceed the limit of " +
                                                std::to_string(caps.max_files)});
  }
  // Piston checks every content before anything else about the files.
  for (size_t i = 0; i < files.size(); ++i) {
    const std::string f = "files[" + std::to_string(i) + "]";
    if (!files[i].is_object()) return Bad(f + " must be an object");
    auto content = files[i].find("content");
    if (content == files[i].end() || !content->is_string())
      return Bad(f + ".content is required as a string");
  }
  std::vector<engine::RequestFile> out;
  std::optional<size_t> entry;  // the first utf8 file: Piston runs code_files[0]
  std::set<std::string> names;
  for (size_t i = 0; i < files.size(); ++i) {
    const json& file = files[i];
    const std::string f = "files[" + std::to_string(i) + "]";
    std::string encoding = "utf8";
    if (auto e = file.find("encoding"); e != file.end() && !e->is_null()) {
      if (!e->is_string() || (*e != "utf8" && *e != "base64" && *e != "hex"))
        return Bad(f + ".encoding must be \"utf8\", \"base64\" or \"hex\"");
      encoding = e->get<std::string>();
    }
    std::string name;
    if (auto n = file.find("name"); n != file.end() && !n->is_null()) {
      if (!n->is_string()) return Bad(f + ".name must be a string");
      name = n->get<std::string>();
    }
    if (!name.empty()) {
      if (!IsValidUtf8(name)) return Bad(f + ".name is not valid UTF-8");
      if (auto ok = sandbox::ValidateRelativePath(name); !ok)
        return Bad(f + ".name: " + ok.error().message());
      if (!names.insert(name).second) return Bad(f + ".name \"" + name + "\" is used twice");
    }
    const std::string& content = file["content"].get_ref<const std::string&>();
    engine::RequestFile rf;
    if (encoding == "base64") {
      auto bytes = Base64Decode(content);
      if (!bytes) return Bad(f + ".content: " + bytes.error().message());
      rf.content = std::move(*bytes);
    } else if (encoding == "hex") {
      auto bytes = HexDecode(content);
      if (!bytes) return Bad(f + ".content: " + bytes.error());
      rf.content = std::move(*bytes);
    } else {
      if (!IsValidUtf8(content)) return Bad(f + ".content is not valid UTF-8");
      rf.content = content;
      if (!entry) entry = i;
    }
    rf.name = std::move(name);
    out.push_back(std::move(rf));
  }
  if (!entry) return Bad("files must include at least one utf8 encoded file");
  // Unnamed files other than the entry get Piston's own default names; the entry's default
  // depends on the language, which only the caller knows.
  for (size_t i = 0; i < out.size(); ++i) {
    if (i == *entry || !out[i].name.empty()) continue;
    out[i].name = "file" + std::to_string(i) + ".code";
    if (!names.insert(out[i].name).second)
      return Bad("files[" + std::to_string(i) + "].name \"" + out[i].name + "\" is used twice");
  }
  // The engine runs the first file when no entry is named.
  std::rotate(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(*entry),
              out.begin() + static_cast<std::ptrdiff_t>(*entry) + 1);
  return out;
}

// Piston's status letters; see the table in piston.h.
json Letters(Status status, int signal, bool stdout_truncated, bool stderr_truncated) {
  switch (status) {
    case Status::kOk:
      return nullptr;
    case Status::kRuntimeError:
    case Status::kCompileError:
      return signal != 0 ? "SG" : "RE";
    case Status::kTimeout:
      return "TO";
    case Status::kMemoryLimit:
      return "SG";
    case Status::kOutputLimit:
      return stderr_truncated && !stdout_truncated ? "EL" : "OL";
    case Status::kCancelled:
      return "SG";
    case Status::kInternalError:
    case Status::kRejected:
    case Status::kQueued:
    case Status::kRunning:
      return "XX";
  }
  return "XX";
}

struct CodeAndSignal {
  json code, signal;
};

// Piston reports SIGKILL and no exit code for the kills of its own limits (job.js: TO/OL/EL).
CodeAndSignal Ending(const json& letters, std::optional<int> exit_code, int signal) {
  if (letters == "TO" || letters == "OL" || letters == "EL") return {nullptr, "SIGKILL"};
  return {exit_code ? json(*exit_code) : json(nullptr),
          signal != 0 ? json(SignalName(signal)) : json(nullptr)};
}

json Message(const engine::ExecutionResult& r) {
  if (!r.reason.empty()) return r.reason;
  if (r.error)
    return r.error->name.empty() ? r.error->message : r.error->name + ": " + r.error->message;
  return nullptr;
}

struct StageView {
  const std::string& stdout_text;
  const std::string& stderr_text;
  std::string output;
  Status status;
  std::optional<int> exit_code;
  int signal;
  bool stdout_truncated, stderr_truncated;
  json message;
  const engine::Usage& usage;
};

json StageJson(const StageView& s) {
  json letters = Letters(s.status, s.signal, s.stdout_truncated, s.stderr_truncated);
  CodeAndSignal end = Ending(letters, s.exit_code, s.signal);
  return {{"stdout", s.stdout_text},
          {"stderr", s.stderr_text},
          {"output", s.output},
          {"code", end.code},
          {"signal", end.signal},
          {"message", s.message},
          {"status", letters},
          {"cpu_time", s.usage.cpu_ms},
          {"wall_time", s.usage.wall_ms},
          {"memory", s.usage.memory_bytes}};
}

// Event payloads come from the engine, but a malformed one must not throw in the socket code.
std::string Str(const json& p, const char* key, std::string fallback = {}) {
  if (!p.is_object()) return fallback;
  auto it = p.find(key);
  return it != p.end() && it->is_string() ? it->get<std::string>() : fallback;
}

json Exit(std::string_view stage, Status status, std::optional<int> exit_code, int signal,
          bool stdout_truncated, bool stderr_truncated) {
  CodeAndSignal end =
      Ending(Letters(status, signal, stdout_truncated, stderr_truncated), exit_code, signal);
  return {{"type", "exit"}, {"stage", stage}, {"code", end.code}, {"signal", end.signal}};
}

json Data(const std::string& stream, const std::string& data) {
  return {{"type", "data"}, {"stream", stream}, {"data", data}};
}

json Stage(std::string_view stage) {
  return {{"type", "stage"}, {"stage", stage}};
}

}  // namespace

json ToJson(const PistonError& e) {
  return {{"message", e.message}};
}

std::expected<engine::ExecutionRequest, PistonError> PistonExecuteFromJson(
    const json& body, const engine::RequestCaps& caps) {
  if (!body.is_object()) return Bad("the request body must be a JSON object");
  engine::ExecutionRequest req;
  // Piston's order of checks and its messages (api/src/api/v2.js get_job).
  auto language = body.find("language");
  if (language == body.end() || !language->is_string() ||
      language->get_ref<const std::string&>().empty())
    return Bad("language is required as a string");
  req.language = language->get<std::string>();
  auto version = body.find("version");
  if (version == body.end() || !version->is_string() ||
      version->get_ref<const std::string&>().empty())
    return Bad("version is required as a string");
  auto prefix = VersionPrefix(version->get<std::string>());
  if (!prefix) return std::unexpected(prefix.error());
  req.version = std::move(*prefix);
  auto files = body.find("files");
  if (files == body.end()) return Bad("files is required as an array");
  auto f = FilesFrom(*files, caps);
  if (!f) return std::unexpected(f.error());
  req.files = std::move(*f);
  for (const auto& pl : kPistonLimits) {
    if (auto ok = ApplyLimit(body, pl, req); !ok) return std::unexpected(ok.error());
  }
  if (auto s = body.find("stdin"); s != body.end() && !s->is_null()) {
    if (!s->is_string()) return Bad("stdin must be a string");
    if (!IsValidUtf8(s->get_ref<const std::string&>())) return Bad("stdin is not valid UTF-8");
    req.stdin_data = s->get<std::string>();
  }
  if (auto a = body.find("args"); a != body.end() && !a->is_null()) {
    if (!a->is_array()) return Bad("args must be an array");
    for (size_t i = 0; i < a->size(); ++i) {
      const json& arg = (*a)[i];
      if (!arg.is_string()) return Bad("args[" + std::to_string(i) + "] must be a string");
      if (!IsValidUtf8(arg.get_ref<const std::string&>()))
        return Bad("args[" + std::to_string(i) + "] is not valid UTF-8");
      req.args.push_back(arg.get<std::string>());
    }
  }
  if (auto too_large = engine::CheckRequestCaps(req, caps))
    return std::unexpected(PistonError{too_large->http_status, too_large->message});
  // job.js: "Add a trailing newline if it doesn't exist" (so an empty stdin is "\n").
  if (!req.stdin_data.ends_with('\n')) req.stdin_data += '\n';
  return req;
}

std::optional<PistonError> PistonRejection(const engine::ExecutionResult& result) {
  if (result.status != Status::kRejected) return std::nullopt;
  return PistonError{400, result.reason};
}

json PistonResultToJson(const engine::ExecutionResult& r) {
  json out = {{"language", r.language}, {"version", r.version}};
  if (r.compile) {
    const engine::StageResult& c = *r.compile;
    const bool failed = c.status != Status::kOk;
    json compile = StageJson({c.stdout_text, c.stderr_text, c.stdout_text + c.stderr_text, c.status,
                              c.exit_code, c.signal, c.stdout_truncated, c.stderr_truncated,
                              failed ? Message(r) : json(nullptr), c.usage});
    out["compile"] = compile;
    if (failed) {
      out["run"] = std::move(compile);
      return out;
    }
  }
  std::string output;
  for (const auto& chunk : r.outputs) output += chunk.text;
  out["run"] = StageJson({r.stdout_text, r.stderr_text, std::move(output), r.status, r.exit_code,
                          r.signal, r.stdout_truncated, r.stderr_truncated,
                          r.status == Status::kOk ? json(nullptr) : Message(r), r.usage});
  return out;
}

json PistonRuntimesToJson(const std::vector<PistonRuntime>& runtimes) {
  json out = json::array();
  for (const auto& rt : runtimes) {
    out.push_back({{"language", rt.language}, {"version", rt.version}, {"aliases", rt.aliases}});
  }
  return out;
}

// ---- WebSocket ----------------------------------------------------------------------------

PistonStep PistonSession::Close(PistonStep step, int code, std::string reason) {
  state_ = State::kClosed;
  step.close = PistonClose{code, std::move(reason)};
  return step;
}

PistonStep PistonSession::Error(std::string_view message) {
  PistonStep step;
  step.send.push_back({{"type", "error"}, {"message", message}});
  // Piston sends the message first because a close reason is limited to 123 bytes.
  return Close(std::move(step), kPistonNotifiedError, "Notified Error");
}

PistonStep PistonSession::Fail(std::string_view message) {
  if (state_ == State::kClosed) return {};
  return Error(message);
}

PistonStep PistonSession::OnInitDeadline() {
  if (state_ != State::kAwaitingInit) return {};
  return Close({}, kPistonInitTimeout, "Initialization Timeout");
}

PistonStep PistonSession::OnMessage(std::string_view text) {
  if (state_ == State::kClosed) return {};
  json msg = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (msg.is_discarded()) return Error("the message is not valid JSON");
  if (!msg.is_object()) return Error("a message must be a JSON object");
  const std::string type = Str(msg, "type");
  if (type == "init") {
    if (state_ == State::kRunning)
      return Close({}, kPistonAlreadyInitialized, "Already Initialized");
    // Piston discards an init's stdin: an interactive job reads data messages only.
    msg.erase("stdin");
    auto req = PistonExecuteFromJson(msg, caps_);
    if (!req) return Error(req.error().message);
    req->stdin_data.clear();  // not even the newline PistonExecuteFromJson adds
    language_ = req->language;
    state_ = State::kRunning;
    PistonStep step;
    step.start = std::move(*req);
    return step;
  }
  if (type == "data") {
    if (state_ != State::kRunning) return Close({}, kPistonNotInitialized, "Not yet initialized");
    if (Str(msg, "stream") != "stdin")
      return Close({}, kPistonStdinOnly, "Can only write to stdin");
    auto data = msg.find("data");
    if (data == msg.end() || !data->is_string()) return Error("data is required as a string");
    stdin_bytes_ += data->get_ref<const std::string&>().size();
    if (stdin_bytes_ > caps_.max_stdin_bytes) {
      return Error("stdin: more than " + std::to_string(caps_.max_stdin_bytes) + " bytes written");
    }
    PistonStep step;
    step.stdin_data = data->get<std::string>();
    return step;
  }
  if (type == "signal") {
    if (state_ != State::kRunning) return Close({}, kPistonNotInitialized, "Not yet initialized");
    auto sig = SignalNumber(Str(msg, "signal"));
    if (!sig) return Close({}, kPistonInvalidSignal, "Invalid signal");
    PistonStep step;
    step.signal = sig;
    return step;
  }
  if (type.empty()) return Error("type is required as a string");
  return Error("unknown message type \"" + type + "\"");
}

PistonStep PistonSession::OnEvent(const engine::Event& e) {
  if (state_ != State::kRunning) return {};
  const json& p = e.payload;
  PistonStep step;
  switch (e.kind) {
    case engine::Event::Kind::kStarted: {
      step.send.push_back({{"type", "runtime"},
                           {"language", Str(p, "language", language_)},
                           {"version", Str(p, "version")}});
      // compile_limits is null exactly when the language has no compile stage.
      const bool compiles =
          p.is_object() && p.contains("compile_limits") && !p["compile_limits"].is_null();
      if (!compiles) {
        run_started_ = true;
        step.send.push_back(Stage("run"));
      }
      break;
    }
    case engine::Event::Kind::kCompileStarted:
      step.send.push_back(Stage("compile"));
      break;
    case engine::Event::Kind::kCompileOutput:
      step.send.push_back(Data(e.stream == "stderr" ? "stderr" : "stdout", e.data));
      break;
    case engine::Event::Kind::kCompileFinished: {
      engine::StageResult s = p.is_object() ? engine::StageFromJson(p) : engine::StageResult{};
      step.send.push_back(
          Exit("compile", s.status, s.exit_code, s.signal, s.stdout_truncated, s.stderr_truncated));
      if (s.status == Status::kOk) {
        run_started_ = true;
        step.send.push_back(Stage("run"));
      }
      break;
    }
    case engine::Event::Kind::kStdout:
      step.send.push_back(Data("stdout", e.data));
      break;
    case engine::Event::Kind::kStderr:
      step.send.push_back(Data("stderr", e.data));
      break;
    case engine::Event::Kind::kFinished: {
      const Status status =
          engine::StatusFromName(Str(p, "status")).value_or(Status::kInternalError);
      if (status == Status::kRejected || status == Status::kInternalError) {
        return Error(Str(p, "reason", std::string(engine::StatusName(status))));
      }
      if (run_started_) {
        std::optional<int> exit_code;
        if (p.contains("exit_code") && p["exit_code"].is_number_integer())
          exit_code = p["exit_code"].get<int>();
        const int signal =
            p.contains("signal") && p["signal"].is_number_integer() ? p["signal"].get<int>() : 0;
        bool out_cut = false;
        bool err_cut = false;
        if (p.contains("truncated") && p["truncated"].is_object()) {
          out_cut = p["truncated"].value("stdout", false);
          err_cut = p["truncated"].value("stderr", false);
        }
        step.send.push_back(Exit("run", status, exit_code, signal, out_cut, err_cut));
      }
      return Close(std::move(step), kPistonJobCompleted, "Job Completed");
    }
    case engine::Event::Kind::kQueued:
    case engine::Event::Kind::kDisplay:
    case engine::Event::Kind::kStatus:
      break;
  }
  return step;
}

}  // namespace polyrun::server
