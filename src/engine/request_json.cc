#include "engine/request_json.h"

#include <algorithm>
#include <array>
#include <map>
#include <span>
#include <string_view>

#include "sandbox/sandbox.h"
#include "util/base64.h"
#include "util/options.h"
#include "util/strings.h"

namespace polyrun::engine {

namespace {

using nlohmann::json;
using Limit = languages::Limit;

template <typename T>
using Parsed = std::expected<T, RequestError>;

// Messages start with the field so that a log line or a client showing only `message` still
// says where the problem is.
RequestError Error(std::string code, int status, std::string field, std::string_view text) {
  std::string message = field.empty() ? std::string(text) : field + ": " + std::string(text);
  return RequestError{std::move(code), std::move(field), std::move(message), status};
}

std::unexpected<RequestError> Invalid(std::string field, std::string_view text) {
  return std::unexpected(Error("invalid_request", 400, std::move(field), text));
}

RequestError TooLarge(std::string field, std::string_view text) {
  return Error("too_large", 413, std::move(field), text);
}

std::string Got(const json& j) {
  return std::string("got ") + j.type_name();
}

// A JSON string that must be valid UTF-8. The parser guarantees that for parsed text; a json
// built in memory (tests, other front ends) may hold any bytes.
Parsed<std::string> String(const json& j, const std::string& field) {
  if (!j.is_string()) return Invalid(field, "expected a string, " + Got(j));
  const auto& s = j.get_ref<const std::string&>();
  if (!IsValidUtf8(s)) return Invalid(field, "not valid UTF-8");
  return s;
}

// A key that is absent or null: both mean "not given", so clients that serialise every field
// of a struct need no special casing.
const json* Optional(const json& body, const char* key) {
  auto it = body.find(key);
  return it == body.end() || it->is_null() ? nullptr : &*it;
}

std::string Joined(std::span<const std::string_view> names) {
  std::string out;
  for (auto n : names) out += (out.empty() ? "" : ", ") + std::string(n);
  return out;
}

std::string LimitNames() {
  std::string out;
  for (const auto& d : languages::LimitDecls())
    out += (out.empty() ? "" : ", ") + std::string(d.name);
  return out;
}

// The OptionDecl's message names the limit ("wall_time: …"); ours names the JSON path instead.
std::string WithoutDeclName(const std::string& message, std::string_view name) {
  const std::string prefix = std::string(name) + ": ";
  return message.starts_with(prefix) ? message.substr(prefix.size()) : message;
}

Parsed<languages::LimitSet> LimitsFrom(const json& j, const std::string& field) {
  if (!j.is_object()) return Invalid(field, "expected an object, " + Got(j));
  languages::LimitSet out;
  for (const auto& [name, value] : j.items()) {
    const std::string f = field + "." + name;
    auto limit = languages::LimitByName(name);
    if (!limit) return Invalid(f, "unknown limit (known: " + LimitNames() + ")");
    const OptionDecl& decl = languages::DeclOf(*limit);
    const std::string unit(OptionUnit(decl.type));
    const std::string expected = "expected a whole number" + (unit.empty() ? "" : " of " + unit) +
                                 " or a string such as \"" + std::string(decl.default_value) + "\"";
    Result<uint64_t> v = 0;
    if (value.is_number_integer()) {
      if (!value.is_number_unsigned() && value.get<int64_t>() < 0)
        return Invalid(f, "must not be negative, got " + value.dump());
      v = CheckOptionNumber(decl, value.get<uint64_t>());
    } else if (value.is_number_float()) {
      return Invalid(f, expected + ", got " + value.dump());
    } else if (value.is_string()) {
      v = ParseOptionNumber(decl, value.get_ref<const std::string&>());
    } else {
      return Invalid(f, expected + ", " + Got(value));
    }
    if (!v) return Invalid(f, WithoutDeclName(v.error().message(), decl.name));
    out[*limit] = *v;
  }
  return out;
}

Parsed<std::vector<RequestFile>> FilesFrom(const json& j, const RequestCaps& caps) {
  if (!j.is_array()) return Invalid("files", "expected an array, " + Got(j));
  if (j.empty()) return Invalid("files", "must not be empty");
  // Counted before anything is decoded: the cheapest refusal first.
  if (j.size() > caps.max_files) {
    return std::unexpected(TooLarge(
        "files",
        std::to_string(j.size()) + " files exceed the limit of " + std::to_string(caps.max_files)));
  }
  static constexpr std::array<std::string_view, 3> kKeys = {"name", "content", "encoding"};
  std::vector<RequestFile> files;
  std::map<std::string, size_t> seen;
  for (size_t i = 0; i < j.size(); ++i) {
    const json& file = j[i];
    const std::string f = "files[" + std::to_string(i) + "]";
    if (!file.is_object()) return Invalid(f, "expected an object, " + Got(file));
    for (const auto& [key, value] : file.items()) {
      if (std::find(kKeys.begin(), kKeys.end(), key) == kKeys.end())
        return Invalid(f + "." + key, "unknown field (known: " + Joined(kKeys) + ")");
    }
    const json* name = Optional(file, "name");
    if (name == nullptr) return Invalid(f + ".name", "required");
    auto n = String(*name, f + ".name");
    if (!n) return std::unexpected(n.error());
    if (auto ok = sandbox::ValidateRelativePath(*n); !ok)
      return Invalid(f + ".name", ok.error().message());
    if (auto [it, fresh] = seen.emplace(*n, i); !fresh) {
      return Invalid(f + ".name",
                     "duplicate \"" + *n + "\" (also files[" + std::to_string(it->second) + "])");
    }
    const json* content = Optional(file, "content");
    if (content == nullptr) return Invalid(f + ".content", "required");
    std::string encoding = "utf8";
    if (const json* e = Optional(file, "encoding")) {
      auto s = String(*e, f + ".encoding");
      if (!s) return std::unexpected(s.error());
      encoding = *s;
    }
    if (encoding == "utf8") {
      auto c = String(*content, f + ".content");
      if (!c) return std::unexpected(c.error());
      files.push_back({*n, std::move(*c)});
    } else if (encoding == "base64") {
      if (!content->is_string())
        return Invalid(f + ".content", "expected a string, " + Got(*content));
      auto bytes = Base64Decode(content->get_ref<const std::string&>());
      if (!bytes) return Invalid(f + ".content", bytes.error().message());
      files.push_back({*n, std::move(*bytes)});
    } else {
      return Invalid(f + ".encoding", "expected \"utf8\" or \"base64\", got \"" + encoding + "\"");
    }
  }
  return files;
}

Parsed<std::vector<std::string>> ArgsFrom(const json& j) {
  if (!j.is_array()) return Invalid("args", "expected an array, " + Got(j));
  std::vector<std::string> args;
  args.reserve(j.size());
  for (size_t i = 0; i < j.size(); ++i) {
    const std::string f = "args[" + std::to_string(i) + "]";
    auto s = String(j[i], f);
    if (!s) return std::unexpected(s.error());
    // execve would cut the argument at the NUL; refuse rather than run something else.
    if (s->find('\0') != std::string::npos) return Invalid(f, "contains a NUL byte");
    args.push_back(std::move(*s));
  }
  return args;
}

Parsed<std::map<std::string, std::string>> EnvFrom(const json& j) {
  if (!j.is_object()) return Invalid("env", "expected an object, " + Got(j));
  std::map<std::string, std::string> env;
  for (const auto& [key, value] : j.items()) {
    const std::string f = "env." + key;
    if (key.empty() || key.find('=') != std::string::npos || key.find('\0') != std::string::npos)
      return Invalid(f, "invalid variable name \"" + key + "\" (empty, or contains '=' or NUL)");
    auto s = String(value, f);
    if (!s) return std::unexpected(s.error());
    if (s->find('\0') != std::string::npos) return Invalid(f, "contains a NUL byte");
    env.emplace(key, std::move(*s));
  }
  return env;
}

Parsed<std::map<std::string, std::string>> LabelsFrom(const json& j) {
  if (!j.is_object()) return Invalid("labels", "expected an object, " + Got(j));
  std::map<std::string, std::string> labels;
  for (const auto& [key, value] : j.items()) {
    auto s = String(value, "labels." + key);
    if (!s) return std::unexpected(s.error());
    labels.emplace(key, std::move(*s));
  }
  return labels;
}

constexpr std::array<std::string_view, 13> kTopLevelKeys = {
    "language", "version",        "code",   "files",   "entry",  "stdin",     "args",
    "env",      "compile_limits", "limits", "network", "labels", "session_id"};

// A session's lifetime or idle timeout: milliseconds, or a duration string ("15m").
Parsed<std::chrono::milliseconds> DurationFrom(const json& j, const std::string& field) {
  static constexpr OptionDecl kDecl = {"duration", "",        OptionType::kDuration, "15m", "",
                                       1,          UINT64_MAX};
  Result<uint64_t> v = 0;
  if (j.is_number_integer()) {
    if (!j.is_number_unsigned() && j.get<int64_t>() < 0)
      return Invalid(field, "must not be negative, got " + j.dump());
    v = CheckOptionNumber(kDecl, j.get<uint64_t>());
  } else if (j.is_string()) {
    v = ParseOptionNumber(kDecl, j.get_ref<const std::string&>());
  } else {
    return Invalid(field, "expected a whole number of ms or a string such as \"15m\", " + Got(j));
  }
  if (!v) return Invalid(field, WithoutDeclName(v.error().message(), kDecl.name));
  return std::chrono::milliseconds(*v);
}

std::optional<RequestError> UnknownKey(const json& body, std::span<const std::string_view> known) {
  for (const auto& [key, value] : body.items()) {
    if (std::find(known.begin(), known.end(), key) == known.end())
      return Invalid(key, "unknown field (known: " + Joined(known) + ")").error();
  }
  return std::nullopt;
}

constexpr std::array<std::string_view, 10> kSessionKeys = {
    "language", "version",  "limits",       "env",       "files",
    "labels",   "lifetime", "idle_timeout", "exclusive", "network"};
constexpr std::array<std::string_view, 4> kSessionExecuteKeys = {"code", "stdin", "limits",
                                                                 "labels"};

}  // namespace

std::optional<RequestError> CheckRequestCaps(const ExecutionRequest& r, const RequestCaps& caps) {
  auto over = [](size_t n, size_t max, std::string_view what) {
    return std::to_string(n) + " " + std::string(what) + " exceed the limit of " +
           std::to_string(max);
  };
  if (r.files.size() > caps.max_files)
    return TooLarge("files", over(r.files.size(), caps.max_files, "files"));
  if (r.code.size() > caps.max_code_bytes)
    return TooLarge("code", over(r.code.size(), caps.max_code_bytes, "bytes"));
  size_t total = 0;
  for (size_t i = 0; i < r.files.size(); ++i) {
    total += r.files[i].content.size();
    if (total > caps.max_code_bytes) {
      return TooLarge(
          "files[" + std::to_string(i) + "].content",
          "the files' contents total more than " + std::to_string(caps.max_code_bytes) + " bytes");
    }
  }
  if (r.stdin_data.size() > caps.max_stdin_bytes)
    return TooLarge("stdin", over(r.stdin_data.size(), caps.max_stdin_bytes, "bytes"));
  if (r.args.size() > caps.max_args)
    return TooLarge("args", over(r.args.size(), caps.max_args, "arguments"));
  total = 0;
  for (size_t i = 0; i < r.args.size(); ++i) {
    total += r.args[i].size();
    if (total > caps.max_arg_bytes) {
      return TooLarge(
          "args[" + std::to_string(i) + "]",
          "the arguments total more than " + std::to_string(caps.max_arg_bytes) + " bytes");
    }
  }
  if (r.env.size() > caps.max_env)
    return TooLarge("env", over(r.env.size(), caps.max_env, "variables"));
  if (r.labels.size() > caps.max_labels)
    return TooLarge("labels", over(r.labels.size(), caps.max_labels, "labels"));
  for (const auto& [key, value] : r.labels) {
    if (key.size() > caps.max_label_bytes)
      return TooLarge("labels." + key,
                      "the key " + over(key.size(), caps.max_label_bytes, "bytes"));
    if (value.size() > caps.max_label_bytes)
      return TooLarge("labels." + key, over(value.size(), caps.max_label_bytes, "bytes"));
  }
  return std::nullopt;
}

std::expected<ExecutionRequest, RequestError> RequestFromJson(const json& body,
                                                              const RequestCaps& caps) {
  if (!body.is_object()) return Invalid("", "the request body must be a JSON object, " + Got(body));
  for (const auto& [key, value] : body.items()) {
    if (std::find(kTopLevelKeys.begin(), kTopLevelKeys.end(), key) == kTopLevelKeys.end())
      return Invalid(key, "unknown field (known: " + Joined(kTopLevelKeys) + ")");
  }
  ExecutionRequest req;

  if (const json* session = Optional(body, "session_id")) {
    auto s = String(*session, "session_id");
    if (!s) return std::unexpected(s.error());
    if (s->empty()) return Invalid("session_id", "must not be empty");
    req.session_id = std::move(*s);
    // What a session's creation fixed cannot change per execution; refused rather than ignored.
    for (const char* key : {"files", "entry", "args", "env", "compile_limits", "network"}) {
      if (Optional(body, key) != nullptr) {
        return Invalid(key, "not with session_id (the session's creation sets it)");
      }
    }
  }
  const json* language = Optional(body, "language");
  if (language == nullptr && req.session_id.empty()) return Invalid("language", "required");
  if (language != nullptr) {
    auto lang = String(*language, "language");
    if (!lang) return std::unexpected(lang.error());
    if (lang->empty()) return Invalid("language", "must not be empty");
    req.language = std::move(*lang);
  }

  if (const json* v = Optional(body, "version")) {
    auto s = String(*v, "version");
    if (!s) return std::unexpected(s.error());
    req.version = std::move(*s);
  }

  const json* code = Optional(body, "code");
  const json* files = Optional(body, "files");
  if (code != nullptr && files != nullptr)
    return Invalid("code", "give either code or files, not both");
  if (code == nullptr && files == nullptr) return Invalid("code", "required (or files)");
  if (code != nullptr) {
    auto s = String(*code, "code");
    if (!s) return std::unexpected(s.error());
    // ExecutionRequest reads an empty `code` as "not given".
    if (s->empty()) return Invalid("code", "must not be empty");
    req.code = std::move(*s);
  } else {
    auto f = FilesFrom(*files, caps);
    if (!f) return std::unexpected(f.error());
    req.files = std::move(*f);
  }

  if (const json* entry = Optional(body, "entry")) {
    if (req.files.empty()) return Invalid("entry", "only with files (code is its own entry)");
    auto s = String(*entry, "entry");
    if (!s) return std::unexpected(s.error());
    if (std::none_of(req.files.begin(), req.files.end(),
                     [&](const RequestFile& f) { return f.name == *s; }))
      return Invalid("entry", "\"" + *s + "\" is not among the files");
    req.entry = std::move(*s);
  }

  if (const json* stdin_json = Optional(body, "stdin")) {
    auto s = String(*stdin_json, "stdin");
    if (!s) return std::unexpected(s.error());
    req.stdin_data = std::move(*s);
  }
  if (const json* args = Optional(body, "args")) {
    auto a = ArgsFrom(*args);
    if (!a) return std::unexpected(a.error());
    req.args = std::move(*a);
  }
  if (const json* env = Optional(body, "env")) {
    auto e = EnvFrom(*env);
    if (!e) return std::unexpected(e.error());
    req.env = std::move(*e);
  }
  if (const json* limits = Optional(body, "limits")) {
    auto l = LimitsFrom(*limits, "limits");
    if (!l) return std::unexpected(l.error());
    req.limits = *l;
  }
  if (const json* limits = Optional(body, "compile_limits")) {
    auto l = LimitsFrom(*limits, "compile_limits");
    if (!l) return std::unexpected(l.error());
    req.compile_limits = *l;
  }
  if (const json* network = Optional(body, "network")) {
    if (!network->is_boolean()) return Invalid("network", "expected a boolean, " + Got(*network));
    req.network = network->get<bool>();
  }
  if (const json* labels = Optional(body, "labels")) {
    auto l = LabelsFrom(*labels);
    if (!l) return std::unexpected(l.error());
    req.labels = std::move(*l);
  }
  if (auto too_large = CheckRequestCaps(req, caps)) return std::unexpected(*too_large);
  return req;
}

std::expected<SessionCreateRequest, RequestError> ParseSessionRequest(const json& body,
                                                                      const RequestCaps& caps) {
  if (!body.is_object()) return Invalid("", "the request body must be a JSON object, " + Got(body));
  if (auto bad = UnknownKey(body, kSessionKeys)) return std::unexpected(*bad);
  SessionCreateRequest out;
  SessionRequest& req = out.request;
  const json* language = Optional(body, "language");
  if (language == nullptr) return Invalid("language", "required");
  auto lang = String(*language, "language");
  if (!lang) return std::unexpected(lang.error());
  if (lang->empty()) return Invalid("language", "must not be empty");
  req.language = std::move(*lang);
  if (const json* v = Optional(body, "version")) {
    auto s = String(*v, "version");
    if (!s) return std::unexpected(s.error());
    req.version = std::move(*s);
  }
  if (const json* limits = Optional(body, "limits")) {
    auto l = LimitsFrom(*limits, "limits");
    if (!l) return std::unexpected(l.error());
    req.limits = *l;
  }
  if (const json* env = Optional(body, "env")) {
    auto e = EnvFrom(*env);
    if (!e) return std::unexpected(e.error());
    req.env = std::move(*e);
  }
  if (const json* files = Optional(body, "files")) {
    auto f = FilesFrom(*files, caps);
    if (!f) return std::unexpected(f.error());
    req.files = std::move(*f);
  }
  if (const json* labels = Optional(body, "labels")) {
    auto l = LabelsFrom(*labels);
    if (!l) return std::unexpected(l.error());
    req.labels = std::move(*l);
  }
  if (const json* lifetime = Optional(body, "lifetime")) {
    auto d = DurationFrom(*lifetime, "lifetime");
    if (!d) return std::unexpected(d.error());
    req.lifetime = *d;
  }
  if (const json* idle = Optional(body, "idle_timeout")) {
    auto d = DurationFrom(*idle, "idle_timeout");
    if (!d) return std::unexpected(d.error());
    req.idle_timeout = *d;
  }
  if (const json* exclusive = Optional(body, "exclusive")) {
    auto s = String(*exclusive, "exclusive");
    if (!s) return std::unexpected(s.error());
    if (s->empty()) return Invalid("exclusive", "must not be empty");
    if (!req.labels.contains(*s))
      return Invalid("exclusive", "names no label of this session (\"" + *s + "\")");
    out.exclusive = std::move(*s);
  }
  if (const json* network = Optional(body, "network")) {
    if (!network->is_boolean()) return Invalid("network", "expected a boolean, " + Got(*network));
    req.network = network->get<bool>();
  }
  // The same caps as an execution's, over the parts a session has.
  ExecutionRequest caps_view;
  caps_view.files = req.files;
  caps_view.env = req.env;
  caps_view.labels = req.labels;
  if (auto too_large = CheckRequestCaps(caps_view, caps)) return std::unexpected(*too_large);
  return out;
}

std::expected<ExecutionRequest, RequestError> SessionExecutionFromJson(
    const json& body, const std::string& session_id, const RequestCaps& caps) {
  if (!body.is_object()) return Invalid("", "the request body must be a JSON object, " + Got(body));
  if (auto bad = UnknownKey(body, kSessionExecuteKeys)) return std::unexpected(*bad);
  ExecutionRequest req;
  req.session_id = session_id;
  const json* code = Optional(body, "code");
  if (code == nullptr) return Invalid("code", "required");
  auto c = String(*code, "code");
  if (!c) return std::unexpected(c.error());
  if (c->empty()) return Invalid("code", "must not be empty");
  req.code = std::move(*c);
  if (const json* stdin_json = Optional(body, "stdin")) {
    auto s = String(*stdin_json, "stdin");
    if (!s) return std::unexpected(s.error());
    req.stdin_data = std::move(*s);
  }
  if (const json* limits = Optional(body, "limits")) {
    auto l = LimitsFrom(*limits, "limits");
    if (!l) return std::unexpected(l.error());
    for (size_t i = 0; i < languages::kLimitCount; ++i) {
      const auto limit = static_cast<Limit>(i);
      if (!PerExecutionLimit(limit) && l->values[i].has_value()) {
        return Invalid("limits." + std::string(languages::DeclOf(limit).name),
                       "set for the whole session when it is created (per execution: wall_time, "
                       "cpu_time, output)");
      }
    }
    req.limits = *l;
  }
  if (const json* labels = Optional(body, "labels")) {
    auto l = LabelsFrom(*labels);
    if (!l) return std::unexpected(l.error());
    req.labels = std::move(*l);
  }
  if (auto too_large = CheckRequestCaps(req, caps)) return std::unexpected(*too_large);
  return req;
}

json ToJson(const RequestError& e) {
  return {{"error", {{"code", e.code}, {"field", e.field}, {"message", e.message}}}};
}

}  // namespace polyrun::engine
