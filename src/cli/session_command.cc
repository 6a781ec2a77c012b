#include "cli/session_command.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/exit_codes.h"
#include "cli/http_client.h"
#include "cli/source_files.h"
#include "engine/result.h"
#include "languages/limits.h"
#include "util/base64.h"
#include "util/files.h"
#include "util/strings.h"
#include "util/units.h"

namespace polyrun::cli {

namespace {

using json = nlohmann::json;
using http_verb = boost::beast::http::verb;
using Action = SessionOptions::Action;

constexpr std::string_view kDefaultServer = "http://127.0.0.1:8080";
constexpr size_t kMaxCodeBytes = 64u << 20;

int Usage(const std::string& message) {
  std::cerr << "polyrun: " << message << "\n";
  return kExitUsage;
}

std::string Dump(const json& j, int indent = -1) {
  return j.dump(indent, ' ', false, json::error_handler_t::replace);
}

std::string ReadAllStdin() {
  std::string out;
  char buf[65536];
  ssize_t n;
  while ((n = ::read(0, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  return out;
}

// "KEY=VALUE" flags into an object; the error names the flag.
std::expected<json, std::string> Pairs(const std::vector<std::string>& items,
                                       std::string_view flag) {
  json out = json::object();
  for (const auto& kv : items) {
    const auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      return std::unexpected(std::string(flag) + " \"" + kv + "\": expected KEY=VALUE");
    }
    out[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return out;
}

// Limit flags as the request's "limits" object (the user's text, checked here first so that a
// typo is a usage error naming the flag's limit).
std::expected<json, std::string> LimitsJson(const std::map<std::string, std::string>& flags) {
  languages::LimitSet check;
  json limits = json::object();
  for (const auto& [name, text] : flags) {
    if (auto r = check.Set(name, text); !r) return std::unexpected(r.error().message());
    limits[name] = text;
  }
  return limits;
}

// A reply's JSON or the process exit code, after telling the user what went wrong: the
// server's own message for an HTTP error (2 for 4xx, 70 for 5xx), kExitUnavailable when it
// could not be reached or the connection broke, 130 when the user gave up waiting.
class Server {
 public:
  explicit Server(HttpClient client) : client_(std::move(client)) {}

  std::expected<json, int> Call(http_verb method, const std::string& target,
                                const json& body = nullptr, const HttpClient::Call& call = {}) {
    auto reply = client_.Request(method, target, body.is_null() ? std::string() : Dump(body), call);
    if (!reply) {
      using Kind = HttpFailure::Kind;
      const HttpFailure& f = reply.error();
      if (f.kind == Kind::kAbandoned) {
        std::cerr << "polyrun: " << f.message << "\n";
        return std::unexpected(kExitCancelled);
      }
      if (f.kind == Kind::kUnreachable) {
        std::cerr << "polyrun: cannot reach polyrun server at " << client_.server().text
                  << " (is `polyrun serve` running?): " << f.message << "\n";
      } else {
        std::cerr << "polyrun: the polyrun server at " << client_.server().text
                  << " did not answer: " << f.message << "\n";
      }
      return std::unexpected(kExitUnavailable);
    }
    auto j = json::parse(reply->body, nullptr, false);
    if (reply->status >= 400) {
      std::string message;
      if (!j.is_discarded() && j.is_object() && j.contains("error") && j["error"].is_object()) {
        const json& e = j["error"];
        auto text = [&e](const char* key) {
          return e.contains(key) && e[key].is_string() ? e[key].get<std::string>() : "";
        };
        message = text("message");
        if (message.empty()) message = text("code");
        if (reply->status == 404 && text("code") == "not_found" && text("field") == "path") {
          message += " (is " + client_.server().text + " a polyrun server with sessions?)";
        }
      }
      if (message.empty()) message = Trim(reply->body.substr(0, 300));
      std::cerr << "polyrun: " << message << " (HTTP " << reply->status << ")\n";
      return std::unexpected(reply->status < 500 ? kExitUsage : kExitInternal);
    }
    if (j.is_discarded() || !(j.is_object() || j.is_array())) {
      std::cerr << "polyrun: the reply from " << client_.server().text << target
                << " is not JSON (HTTP " << reply->status << ")\n";
      return std::unexpected(kExitInternal);
    }
    return j;
  }

  const HttpClient& client() const { return client_; }

 private:
  HttpClient client_;
};

std::string SessionPath(const std::string& id, std::string_view suffix = "") {
  return "/v1/sessions/" + EncodePathSegment(id) + std::string(suffix);
}

// The field as text for a table cell ("-" when absent).
std::string Cell(const json& o, const char* key) {
  if (!o.contains(key) || o[key].is_null()) return "-";
  if (o[key].is_string()) return o[key].get<std::string>();
  return Dump(o[key]);
}

// Seconds since an RFC 3339 UTC timestamp ("2024-05-01T12:34:56.789Z"); nullopt when it is
// not one.
std::optional<int64_t> SecondsSince(const std::string& rfc3339) {
  std::tm tm{};
  if (std::sscanf(rfc3339.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                  &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6) {
    return std::nullopt;
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  const time_t then = ::timegm(&tm);
  if (then == static_cast<time_t>(-1)) return std::nullopt;
  return std::max<int64_t>(0, static_cast<int64_t>(std::time(nullptr) - then));
}

std::string Age(int64_t s) {
  char buf[32];
  if (s < 60) {
    std::snprintf(buf, sizeof buf, "%llds", static_cast<long long>(s));
  } else if (s < 3600) {
    std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  } else {
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60));
  }
  return buf;
}

// The id of the language that claims `file`'s extension, from the server's registry (the one
// that counts); else the exit code, after saying why.
std::expected<std::string, int> LanguageOfFile(Server& server, const std::string& file) {
  const auto dot = file.rfind('.');
  const auto slash = file.rfind('/');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) {
    return std::unexpected(Usage(file + ": no extension; say the language with -l LANG"));
  }
  const std::string extension = file.substr(dot + 1);
  auto languages = server.Call(http_verb::get, "/v1/languages");
  if (!languages) return std::unexpected(languages.error());
  std::string found;
  for (const auto& l : languages->is_array() ? *languages : json::array()) {
    if (!l.is_object() || !l.contains("extensions") || !l["extensions"].is_array()) continue;
    for (const auto& e : l["extensions"]) {
      if (!e.is_string() || e.get<std::string>() != extension) continue;
      // A usable language with a session driver wins over one that only claims the extension.
      if (found.empty() || (l.value("usable", false) && l.value("sessions", false))) {
        found = l.value("id", "");
      }
    }
  }
  if (found.empty()) {
    return std::unexpected(Usage(file + ": no language of the server has the extension \"." +
                                 extension + "\"; say the language with -l LANG"));
  }
  return found;
}

int Create(Server& server, const SessionOptions& o) {
  json body = json::object();
  if (!o.files.empty()) {
    auto files = ReadSourceFiles(o.files);
    if (!files) return Usage(files.error().message());
    json list = json::array();
    for (const auto& f : *files) {
      if (IsValidUtf8(f.content)) {
        list.push_back({{"name", f.name}, {"content", f.content}});
      } else {
        list.push_back(
            {{"name", f.name}, {"content", Base64Encode(f.content)}, {"encoding", "base64"}});
      }
    }
    body["files"] = std::move(list);
  }
  if (o.language.empty() && o.files.empty()) {
    return Usage("session create needs -l LANG (or a file to take it from)");
  }
  if (!o.limits.empty()) {
    auto limits = LimitsJson(o.limits);
    if (!limits) return Usage(limits.error());
    body["limits"] = std::move(*limits);
  }
  auto env = Pairs(o.env, "--env");
  if (!env) return Usage(env.error());
  if (!env->empty()) body["env"] = std::move(*env);
  auto labels = Pairs(o.labels, "--label");
  if (!labels) return Usage(labels.error());
  for (const auto& [flag, key, text] :
       {std::tuple{"--lifetime", "lifetime", o.lifetime},
        std::tuple{"--idle-timeout", "idle_timeout", o.idle_timeout}}) {
    if (text.empty()) continue;
    auto d = ParseDuration(text);
    if (!d) return Usage(std::string(flag) + " \"" + text + "\": " + d.error().message());
    body[key] = d->count();
  }
  if (!o.exclusive.empty()) {
    if (!labels->contains(o.exclusive)) {
      return Usage("--exclusive " + o.exclusive + ": the session has no such label (give --label " +
                   o.exclusive + "=VALUE)");
    }
    body["exclusive"] = o.exclusive;
  }
  if (!labels->empty()) body["labels"] = std::move(*labels);
  if (o.language.empty()) {
    auto language = LanguageOfFile(server, o.files.front());
    if (!language) return language.error();
    body["language"] = *language;
  } else {
    body["language"] = o.language;
  }
  auto session = server.Call(http_verb::post, "/v1/sessions", body);
  if (!session) return session.error();
  if (o.json) {
    std::cout << Dump(*session, 2) << "\n";
  } else {
    std::cout << session->value("id", "") << "\n";
  }
  return 0;
}

// The note printed for a MIME bundle that is not plain text: its richest type and its size
// (decoded bytes for base64 content).
std::string BundleNote(const char* what, const json& bundle) {
  std::string type;
  for (const auto& [mime, value] : bundle.items()) {
    if (mime != "text/plain") {
      type = mime;
      break;
    }
  }
  if (type.empty()) return "";
  const json& value = bundle[type];
  size_t bytes = 0;
  if (value.is_string()) {
    const auto& s = value.get_ref<const std::string&>();
    const bool textual = type.starts_with("text/") || type.find("json") != std::string::npos ||
                         type.find("xml") != std::string::npos ||
                         type.find("javascript") != std::string::npos;
    auto decoded = textual ? Result<std::string>(s) : Base64Decode(s);
    bytes = decoded ? decoded->size() : s.size();
  } else {
    bytes = Dump(value).size();
  }
  return "[" + std::string(what) + ": " + type + ", " + std::to_string(bytes) + " bytes]";
}

void WriteText(int fd, const std::string& text) {
  (void)WriteAll(fd, text.data(), text.size());
}

// Prints a result REPL-style: its output in order (streams to stdout/stderr, displays as a
// one-line note or their text), then the value of the last expression, then the error.
void PrintResult(const json& r) {
  bool ends_in_newline = true;
  auto out = [&](const std::string& text) {
    if (text.empty()) return;
    WriteText(1, text);
    ends_in_newline = text.back() == '\n';
  };
  auto line = [&](const std::string& text) {
    if (!ends_in_newline) out("\n");
    out(text + "\n");
  };
  const json outputs = r.value("outputs", json::array());
  if (outputs.is_array() && !outputs.empty()) {
    for (const auto& chunk : outputs) {
      if (!chunk.is_object()) continue;
      if (chunk.value("type", "") == "display") {
        const json data = chunk.value("data", json::object());
        if (!data.is_object()) continue;
        const std::string note = BundleNote("display", data);
        if (!note.empty()) {
          line(note);
        } else if (data.contains("text/plain") && data["text/plain"].is_string()) {
          line(data["text/plain"].get<std::string>());
        }
        continue;
      }
      const std::string text = chunk.value("text", "");
      if (chunk.value("stream", "") == "stderr") {
        WriteText(2, text);
      } else {
        out(text);
      }
    }
  } else {
    out(r.value("stdout", ""));
    WriteText(2, r.value("stderr", ""));
  }
  const json result = r.contains("result") ? r["result"] : json();
  if (result.is_object() && !result.empty()) {
    if (result.contains("text/plain") && result["text/plain"].is_string()) {
      line(result["text/plain"].get<std::string>());
    } else if (const std::string note = BundleNote("result", result); !note.empty()) {
      line(note);
    }
  }
  if (!ends_in_newline && ::isatty(1) != 0) out("\n");
}

// The error of a runtime_error result, as the language's REPL would show it.
void PrintError(const json& e) {
  std::string text;
  for (const auto& f : e.value("traceback", json::array())) {
    if (!f.is_object()) continue;
    const std::string file = f.contains("file") && f["file"].is_string() ? f["file"] : "";
    const int line = f.contains("line") && f["line"].is_number_integer() ? f["line"].get<int>() : 0;
    const std::string function =
        f.contains("function") && f["function"].is_string() ? f["function"] : "";
    if (line == 0) {
      text += function + "\n";  // a driver's own line of text
    } else {
      text += "File \"" + file + "\", line " + std::to_string(line) +
              (function.empty() ? "" : ", in " + function) + "\n";
    }
  }
  text += e.value("name", "Error");
  const std::string message =
      e.contains("message") && e["message"].is_string() ? e["message"].get<std::string>() : "";
  if (!message.empty()) text += ": " + message;
  if (e.value("traceback", json::array()).empty() && e.contains("line") &&
      e["line"].is_number_integer()) {
    text += " (line " + std::to_string(e["line"].get<int>()) + ")";
  }
  WriteText(2, text + "\n");
}

// `polyrun run`'s exit code for a result (exit_codes.h); a cell that raised, with no process
// exit status of its own, exits 1.
int ExitCodeOf(const json& r) {
  auto status = engine::StatusFromName(r.value("status", ""));
  if (!status) return kExitInternal;
  engine::ExecutionResult result;
  result.status = *status;
  if (r.contains("exit_code") && r["exit_code"].is_number_integer()) {
    result.exit_code = r["exit_code"].get<int>();
  }
  if (r.contains("signal") && r["signal"].is_number_integer()) {
    result.signal = r["signal"].get<int>();
  }
  if (!result.exit_code && result.signal == 0) {
    if (result.status == engine::Status::kOk) return 0;
    if (result.status == engine::Status::kRuntimeError) return 1;
  }
  return ExitCodeFor(result);
}

int Exec(Server& server, const SessionOptions& o) {
  json body = json::object();
  if (o.code && !o.code_file.empty())
    return Usage("give either -c CODE or a FILE (or -), not both");
  std::string code;
  if (o.code) {
    code = *o.code;
  } else if (o.code_file == "-") {
    code = ReadAllStdin();
  } else if (!o.code_file.empty()) {
    auto text = ReadTrustedFile(o.code_file, kMaxCodeBytes);
    if (!text) return Usage("cannot read " + o.code_file + ": " + text.error().message());
    code = std::move(*text);
  } else {
    return Usage("nothing to run: give -c CODE, FILE or - (code from stdin)");
  }
  if (!IsValidUtf8(code)) return Usage("the code is not valid UTF-8");
  body["code"] = code;
  if (o.input) {
    if (!IsValidUtf8(*o.input)) return Usage("--input is not valid UTF-8");
    body["stdin"] = *o.input;
  }
  if (!o.limits.empty()) {
    auto limits = LimitsJson(o.limits);
    if (!limits) return Usage(limits.error());
    body["limits"] = std::move(*limits);
  }
  auto labels = Pairs(o.labels, "--label");
  if (!labels) return Usage(labels.error());
  if (!labels->empty()) body["labels"] = std::move(*labels);

  // Ctrl-C interrupts the execution (the session keeps its state, the result says
  // `cancelled`); a second one stops waiting.
  HttpClient::Call call;
  call.timeout = std::chrono::milliseconds(0);
  call.on_interrupt = [&] {
    HttpClient side = server.client();
    HttpClient::Call quick;
    quick.timeout = std::chrono::milliseconds(10000);
    auto sent = side.Request(http_verb::post, SessionPath(o.id, "/interrupt"), "{}", quick);
    // 409: the execution ended meanwhile, and its result is on its way.
    if (!sent) {
      std::cerr << "polyrun: could not interrupt the execution: " << sent.error().message << "\n";
    } else if (sent->status >= 400 && sent->status != 409) {
      std::cerr << "polyrun: could not interrupt the execution (HTTP " << sent->status << ")\n";
    }
  };
  auto result = server.Call(http_verb::post, SessionPath(o.id, "/execute?wait=true"), body, call);
  if (!result) return result.error();
  const json& r = *result;
  const std::string status = r.value("status", "");
  const std::string reason = r.value("reason", "");
  if (o.json) {
    std::cout << Dump(r, 2) << "\n" << std::flush;
    if (status == "rejected") return kExitUsage;
    if (status == "internal_error") return kExitInternal;
    return 0;
  }
  if (status == "rejected") return Usage(reason);
  PrintResult(r);
  if (status == "runtime_error" && r.contains("error") && r["error"].is_object()) {
    PrintError(r["error"]);
  } else if (status != "ok" && status != "runtime_error") {
    std::cerr << "polyrun: " << status << ": " << reason << "\n";
  } else if (status == "runtime_error") {
    std::cerr << "polyrun: " << reason << "\n";
  }
  return ExitCodeOf(r);
}

int List(Server& server, const SessionOptions& o) {
  auto reply = server.Call(http_verb::get, "/v1/sessions");
  if (!reply) return reply.error();
  if (o.json) {
    std::cout << Dump(*reply, 2) << "\n";
    return 0;
  }
  const json sessions = reply->value("sessions", json::array());
  std::vector<std::vector<std::string>> rows = {
      {"ID", "LANGUAGE", "STATE", "EXECUTIONS", "IDLE SINCE"}};
  for (const auto& s : sessions) {
    if (!s.is_object()) continue;
    std::string idle = "-";
    if (s.value("state", "") == "idle") {
      if (auto age = SecondsSince(s.value("last_active_at", ""))) idle = Age(*age) + " ago";
    }
    rows.push_back(
        {Cell(s, "id"), Cell(s, "language"), Cell(s, "state"), Cell(s, "executions"), idle});
  }
  std::vector<size_t> width(rows.front().size(), 0);
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string text;
    for (size_t i = 0; i < row.size(); ++i) {
      text += row[i];
      if (i + 1 < row.size()) text += std::string(width[i] - row[i].size() + 2, ' ');
    }
    std::cout << text << "\n";
  }
  return 0;
}

int Control(Server& server, const SessionOptions& o) {
  std::expected<json, int> reply;
  switch (o.action) {
    case Action::kInterrupt:
      reply = server.Call(http_verb::post, SessionPath(o.id, "/interrupt"), json::object());
      break;
    case Action::kRestart:
      reply = server.Call(http_verb::post, SessionPath(o.id, "/restart"), json::object());
      break;
    default:
      reply = server.Call(http_verb::delete_, SessionPath(o.id));
      break;
  }
  if (!reply) return reply.error();
  if (o.json) std::cout << Dump(*reply, 2) << "\n";
  return 0;
}

}  // namespace

int SessionCommand(const SessionOptions& o) {
  auto url = ParseServerUrl(o.server.empty() ? kDefaultServer : o.server);
  if (!url) return Usage(url.error().context);
  if (o.action != Action::kCreate && o.action != Action::kList && o.id.empty()) {
    return Usage("give the session id");
  }
  Server server(HttpClient(std::move(*url), o.api_key));
  switch (o.action) {
    case Action::kCreate:
      return Create(server, o);
    case Action::kExec:
      return Exec(server, o);
    case Action::kList:
      return List(server, o);
    default:
      return Control(server, o);
  }
}

}  // namespace polyrun::cli
