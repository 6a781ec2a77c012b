#include "engine/request_json.h"

#include <gtest/gtest.h>

#include "util/base64.h"

namespace polyrun::engine {
namespace {

using languages::Limit;
using nlohmann::json;

std::expected<ExecutionRequest, RequestError> Parse(const json& body,
                                                    const RequestCaps& caps = {}) {
  return RequestFromJson(body, caps);
}

json Minimal() {
  return {{"language", "python"}, {"code", "print(1)"}};
}

json WithFiles(json files) {
  return {{"language", "python"}, {"files", std::move(files)}};
}

// The error of a refused body; fails the test when the body was accepted.
RequestError Refused(const json& body, const RequestCaps& caps = {}) {
  auto r = Parse(body, caps);
  EXPECT_FALSE(r) << body.dump();
  return r ? RequestError{} : r.error();
}

void ExpectInvalid(const json& body, const std::string& field, const std::string& message) {
  RequestError e = Refused(body);
  EXPECT_EQ(e.code, "invalid_request") << body.dump();
  EXPECT_EQ(e.http_status, 400);
  EXPECT_EQ(e.field, field) << body.dump();
  EXPECT_EQ(e.message, message) << body.dump();
}

void ExpectTooLarge(const json& body, const RequestCaps& caps, const std::string& field) {
  RequestError e = Refused(body, caps);
  EXPECT_EQ(e.code, "too_large") << body.dump();
  EXPECT_EQ(e.http_status, 413);
  EXPECT_EQ(e.field, field) << e.message;
  EXPECT_TRUE(e.message.starts_with(field + ": ")) << e.message;
}

TEST(RequestFromJson, AcceptsTheFullShape) {
  json body = {
      {"language", "python"},
      {"version", "3.11"},
      {"files",
       {{{"name", "main.py"}, {"content", "import util\n"}},
        {{"name", "lib/util.py"}, {"content", "x = 1\n"}, {"encoding", "utf8"}}}},
      {"entry", "main.py"},
      {"stdin", "in\n"},
      {"args", {"a", "b c"}},
      {"env", {{"DEBUG", "1"}}},
      {"limits", {{"wall_time", "5s"}, {"memory", 268435456}, {"processes", 8}}},
      {"compile_limits", {{"cpu_time", 10000}}},
      {"network", false},
      {"labels", {{"artifact_id", "a1"}, {"user", "ada"}}},
  };
  auto r = Parse(body);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->language, "python");
  EXPECT_EQ(r->version, "3.11");
  ASSERT_EQ(r->files.size(), 2u);
  EXPECT_EQ(r->files[1].name, "lib/util.py");
  EXPECT_EQ(r->files[1].content, "x = 1\n");
  EXPECT_EQ(r->entry, "main.py");
  EXPECT_EQ(r->stdin_data, "in\n");
  EXPECT_EQ(r->args, (std::vector<std::string>{"a", "b c"}));
  EXPECT_EQ(r->env.at("DEBUG"), "1");
  EXPECT_EQ(r->limits[Limit::kWallTime], 5000u);
  EXPECT_EQ(r->limits[Limit::kMemory], 256u << 20);
  EXPECT_EQ(r->limits[Limit::kProcesses], 8u);
  EXPECT_FALSE(r->limits[Limit::kCpuTime].has_value());
  EXPECT_EQ(r->compile_limits[Limit::kCpuTime], 10000u);
  EXPECT_FALSE(r->network);
  EXPECT_EQ(r->labels.at("artifact_id"), "a1");
  EXPECT_TRUE(r->code.empty());
}

TEST(RequestFromJson, MinimalCodeRequest) {
  auto r = Parse(Minimal());
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->code, "print(1)");
  EXPECT_TRUE(r->files.empty());
  EXPECT_TRUE(r->version.empty());
  EXPECT_TRUE(r->limits.empty());
  EXPECT_FALSE(r->network);
}

TEST(RequestFromJson, NullMeansLeftOut) {
  json body = Minimal();
  for (const char* key : {"version", "files", "stdin", "args", "env", "limits", "compile_limits",
                          "network", "labels", "entry"}) {
    body[key] = nullptr;
  }
  auto r = Parse(body);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->code, "print(1)");
}

TEST(RequestFromJson, BodyMustBeAnObject) {
  ExpectInvalid(json::array(), "", "the request body must be a JSON object, got array");
  ExpectInvalid("x", "", "the request body must be a JSON object, got string");
}

TEST(RequestFromJson, UnknownTopLevelKeyIsNamed) {
  json body = Minimal();
  body["langauge"] = "python";
  RequestError e = Refused(body);
  EXPECT_EQ(e.field, "langauge");
  EXPECT_TRUE(e.message.starts_with("langauge: unknown field (known: language, version"))
      << e.message;
}

TEST(RequestFromJson, LanguageIsARequiredNonEmptyString) {
  ExpectInvalid({{"code", "x"}}, "language", "language: required");
  ExpectInvalid({{"language", ""}, {"code", "x"}}, "language", "language: must not be empty");
  ExpectInvalid({{"language", 3}, {"code", "x"}}, "language",
                "language: expected a string, got number");
}

TEST(RequestFromJson, VersionIsAString) {
  json body = Minimal();
  body["version"] = 3.11;
  ExpectInvalid(body, "version", "version: expected a string, got number");
  body["version"] = "*";
  EXPECT_EQ(Parse(body).value().version, "*");
}

TEST(RequestFromJson, ExactlyOneOfCodeAndFiles) {
  ExpectInvalid({{"language", "python"}}, "code", "code: required (or files)");
  json both = Minimal();
  both["files"] = {{{"name", "a.py"}, {"content", "x"}}};
  ExpectInvalid(both, "code", "code: give either code or files, not both");
  ExpectInvalid({{"language", "python"}, {"code", ""}}, "code", "code: must not be empty");
  ExpectInvalid({{"language", "python"}, {"code", json::array()}}, "code",
                "code: expected a string, got array");
}

TEST(RequestFromJson, FilesShape) {
  ExpectInvalid(WithFiles(json::object()), "files", "files: expected an array, got object");
  ExpectInvalid(WithFiles(json::array()), "files", "files: must not be empty");
  ExpectInvalid(WithFiles({"print(1)"}), "files[0]", "files[0]: expected an object, got string");
  ExpectInvalid(WithFiles({{{"content", "x"}}}), "files[0].name", "files[0].name: required");
  ExpectInvalid(WithFiles({{{"name", ""}, {"content", "x"}}}), "files[0].name",
                "files[0].name: file name is empty");
  ExpectInvalid(WithFiles({{{"name", 7}, {"content", "x"}}}), "files[0].name",
                "files[0].name: expected a string, got number");
  ExpectInvalid(WithFiles({{{"name", "a.py"}}}), "files[0].content", "files[0].content: required");
  ExpectInvalid(WithFiles({{{"name", "a.py"}, {"content", 1}}}), "files[0].content",
                "files[0].content: expected a string, got number");
  ExpectInvalid(WithFiles({{{"name", "a.py"}, {"content", "x"}, {"mode", 493}}}), "files[0].mode",
                "files[0].mode: unknown field (known: name, content, encoding)");
}

TEST(RequestFromJson, FileNamesMustBeCleanRelativePaths) {
  RequestError e = Refused(WithFiles(
      {{{"name", "a.py"}, {"content", ""}}, {{"name", "../etc/passwd"}, {"content", "x"}}}));
  EXPECT_EQ(e.field, "files[1].name");
  EXPECT_NE(e.message.find("\"..\""), std::string::npos) << e.message;
  EXPECT_EQ(Refused(WithFiles({{{"name", "/abs.py"}, {"content", "x"}}})).field, "files[0].name");
}

TEST(RequestFromJson, DuplicateFileNamesAreRefused) {
  ExpectInvalid(WithFiles({{{"name", "a.py"}, {"content", "1"}},
                           {{"name", "b.py"}, {"content", "2"}},
                           {{"name", "a.py"}, {"content", "3"}}}),
                "files[2].name", "files[2].name: duplicate \"a.py\" (also files[0])");
}

TEST(RequestFromJson, Base64RoundTripsBinaryBytes) {
  std::string bytes;
  for (int i = 0; i < 256; ++i) bytes.push_back(static_cast<char>(i));
  auto r = Parse(WithFiles(
      {{{"name", "main.py"}, {"content", "print(1)"}},
       {{"name", "data.bin"}, {"content", Base64Encode(bytes)}, {"encoding", "base64"}}}));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->files[1].content, bytes);
  EXPECT_EQ(r->files[0].content, "print(1)");
}

TEST(RequestFromJson, BadBase64NamesTheContent) {
  RequestError e =
      Refused(WithFiles({{{"name", "a.bin"}, {"content", "AA!A"}, {"encoding", "base64"}}}));
  EXPECT_EQ(e.code, "invalid_request");
  EXPECT_EQ(e.field, "files[0].content");
  EXPECT_EQ(e.message, "files[0].content: base64: invalid character at offset 2");
  EXPECT_EQ(
      Refused(WithFiles({{{"name", "a.bin"}, {"content", "AAA"}, {"encoding", "base64"}}})).field,
      "files[0].content");
}

TEST(RequestFromJson, UnknownEncodingIsRefused) {
  ExpectInvalid(WithFiles({{{"name", "a.py"}, {"content", "41"}, {"encoding", "hex"}}}),
                "files[0].encoding",
                "files[0].encoding: expected \"utf8\" or \"base64\", got \"hex\"");
  ExpectInvalid(WithFiles({{{"name", "a.py"}, {"content", "x"}, {"encoding", true}}}),
                "files[0].encoding", "files[0].encoding: expected a string, got boolean");
}

TEST(RequestFromJson, Utf8IsCheckedWhereTheWireSaysUtf8) {
  // A parser never produces this; a json built in memory can.
  const std::string bad = "\xff\xfe";
  ExpectInvalid(WithFiles({{{"name", "a.py"}, {"content", bad}}}), "files[0].content",
                "files[0].content: not valid UTF-8");
  json body = Minimal();
  body["stdin"] = bad;
  ExpectInvalid(body, "stdin", "stdin: not valid UTF-8");
  body = Minimal();
  body["args"] = {"ok", bad};
  ExpectInvalid(body, "args[1]", "args[1]: not valid UTF-8");
}

TEST(RequestFromJson, EntryMustNameOneOfTheFiles) {
  json body =
      WithFiles({{{"name", "a.py"}, {"content", "1"}}, {{"name", "b.py"}, {"content", "2"}}});
  body["entry"] = "b.py";
  EXPECT_EQ(Parse(body).value().entry, "b.py");
  body["entry"] = "c.py";
  ExpectInvalid(body, "entry", "entry: \"c.py\" is not among the files");
  body["entry"] = 1;
  ExpectInvalid(body, "entry", "entry: expected a string, got number");
  json code = Minimal();
  code["entry"] = "main.py";
  ExpectInvalid(code, "entry", "entry: only with files (code is its own entry)");
}

TEST(RequestFromJson, StdinArgsTypes) {
  json body = Minimal();
  body["stdin"] = 5;
  ExpectInvalid(body, "stdin", "stdin: expected a string, got number");
  body = Minimal();
  body["args"] = "a b";
  ExpectInvalid(body, "args", "args: expected an array, got string");
  body["args"] = {"a", 1};
  ExpectInvalid(body, "args[1]", "args[1]: expected a string, got number");
  body["args"] = {"a", std::string("b\0c", 3)};
  ExpectInvalid(body, "args[1]", "args[1]: contains a NUL byte");
}

TEST(RequestFromJson, EnvNamesAndValues) {
  json body = Minimal();
  body["env"] = {{"A", "1"}, {"B_2", ""}};
  auto r = Parse(body);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->env.size(), 2u);
  body["env"] = {"A=1"};
  ExpectInvalid(body, "env", "env: expected an object, got array");
  body["env"] = {{"A=B", "1"}};
  ExpectInvalid(body, "env.A=B",
                "env.A=B: invalid variable name \"A=B\" (empty, or contains '=' or NUL)");
  body["env"] = {{"", "1"}};
  EXPECT_EQ(Refused(body).field, "env.");
  body["env"] = {{std::string("A\0B", 3), "1"}};
  EXPECT_EQ(Refused(body).code, "invalid_request");
  body["env"] = {{"A", 1}};
  ExpectInvalid(body, "env.A", "env.A: expected a string, got number");
  body["env"] = {{"A", std::string("x\0y", 3)}};
  ExpectInvalid(body, "env.A", "env.A: contains a NUL byte");
}

TEST(RequestFromJson, LimitsAsNumbersAndStrings) {
  json body = Minimal();
  body["limits"] = {{"wall_time", 1500}, {"cpu_time", "2s"},  {"memory", "64M"},
                    {"output", 1024},    {"file_size", "1M"}, {"open_files", 32},
                    {"disk", 8388608},   {"processes", "16"}};
  auto r = Parse(body);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->limits[Limit::kWallTime], 1500u);
  EXPECT_EQ(r->limits[Limit::kCpuTime], 2000u);
  EXPECT_EQ(r->limits[Limit::kMemory], 64u << 20);
  EXPECT_EQ(r->limits[Limit::kOutput], 1024u);
  EXPECT_EQ(r->limits[Limit::kFileSize], 1u << 20);
  EXPECT_EQ(r->limits[Limit::kOpenFiles], 32u);
  EXPECT_EQ(r->limits[Limit::kDisk], 8u << 20);
  EXPECT_EQ(r->limits[Limit::kProcesses], 16u);
}

TEST(RequestFromJson, BadLimitsNameTheLimit) {
  json body = Minimal();
  body["limits"] = {{"wall", "5s"}};
  RequestError e = Refused(body);
  EXPECT_EQ(e.field, "limits.wall");
  EXPECT_TRUE(e.message.starts_with("limits.wall: unknown limit (known: wall_time, cpu_time"))
      << e.message;
  body["limits"] = {{"wall_time", "5x"}};
  e = Refused(body);
  EXPECT_EQ(e.field, "limits.wall_time");
  EXPECT_TRUE(e.message.starts_with("limits.wall_time: invalid duration \"5x\"")) << e.message;
  body["limits"] = {{"wall_time", 0}};
  ExpectInvalid(body, "limits.wall_time", "limits.wall_time: 0ms is out of range (1ms to 24h)");
  body["limits"] = {{"memory", "1M"}};
  ExpectInvalid(body, "limits.memory", "limits.memory: 1M is out of range (8M to 1T)");
  body["limits"] = {{"memory", -1}};
  ExpectInvalid(body, "limits.memory", "limits.memory: must not be negative, got -1");
  body["limits"] = {{"wall_time", 1.5}};
  ExpectInvalid(body, "limits.wall_time",
                "limits.wall_time: expected a whole number of ms or a string such as \"5s\", got "
                "1.5");
  body["limits"] = {{"processes", true}};
  ExpectInvalid(body, "limits.processes",
                "limits.processes: expected a whole number or a string such as \"64\", got "
                "boolean");
  body["limits"] = "5s";
  ExpectInvalid(body, "limits", "limits: expected an object, got string");
  body.erase("limits");
  body["compile_limits"] = {{"cpu_time", "forever"}};
  EXPECT_EQ(Refused(body).field, "compile_limits.cpu_time");
}

TEST(RequestFromJson, NetworkAndLabels) {
  json body = Minimal();
  body["network"] = true;
  EXPECT_TRUE(Parse(body).value().network);
  body["network"] = "yes";
  ExpectInvalid(body, "network", "network: expected a boolean, got string");
  body = Minimal();
  body["labels"] = {{"user", 1}};
  ExpectInvalid(body, "labels.user", "labels.user: expected a string, got number");
  body["labels"] = {"user"};
  ExpectInvalid(body, "labels", "labels: expected an object, got array");
}

// Each cap: exactly the maximum passes, one more is refused naming the field.
TEST(RequestCaps, FilesCount) {
  RequestCaps caps;
  caps.max_files = 2;
  json files = {{{"name", "a.py"}, {"content", "1"}}, {{"name", "b.py"}, {"content", "2"}}};
  EXPECT_TRUE(Parse(WithFiles(files), caps));
  files.push_back({{"name", "c.py"}, {"content", "3"}});
  ExpectTooLarge(WithFiles(files), caps, "files");
  EXPECT_EQ(Refused(WithFiles(files), caps).message, "files: 3 files exceed the limit of 2");
}

TEST(RequestCaps, CodeBytesCountDecodedContent) {
  RequestCaps caps;
  caps.max_code_bytes = 6;
  json body = {{"language", "python"}, {"code", "123456"}};
  EXPECT_TRUE(Parse(body, caps));
  body["code"] = "1234567";
  ExpectTooLarge(body, caps, "code");
  // 8 base64 characters decode to 6 bytes: within the cap.
  json files = {{{"name", "a.py"}, {"content", "12"}},
                {{"name", "b.bin"}, {"content", Base64Encode("3456")}, {"encoding", "base64"}}};
  EXPECT_TRUE(Parse(WithFiles(files), caps));
  files.push_back({{"name", "c.py"}, {"content", "7"}});
  ExpectTooLarge(WithFiles(files), caps, "files[2].content");
}

TEST(RequestCaps, Stdin) {
  RequestCaps caps;
  caps.max_stdin_bytes = 3;
  json body = Minimal();
  body["stdin"] = "abc";
  EXPECT_TRUE(Parse(body, caps));
  body["stdin"] = "abcd";
  ExpectTooLarge(body, caps, "stdin");
}

TEST(RequestCaps, ArgsCountAndBytes) {
  RequestCaps caps;
  caps.max_args = 2;
  caps.max_arg_bytes = 4;
  json body = Minimal();
  body["args"] = {"ab", "cd"};
  EXPECT_TRUE(Parse(body, caps));
  body["args"] = {"a", "b", "c"};
  ExpectTooLarge(body, caps, "args");
  body["args"] = {"ab", "cde"};
  ExpectTooLarge(body, caps, "args[1]");
}

TEST(RequestCaps, EnvCount) {
  RequestCaps caps;
  caps.max_env = 1;
  json body = Minimal();
  body["env"] = {{"A", "1"}};
  EXPECT_TRUE(Parse(body, caps));
  body["env"]["B"] = "2";
  ExpectTooLarge(body, caps, "env");
}

TEST(RequestCaps, LabelsCountAndBytes) {
  RequestCaps caps;
  caps.max_labels = 1;
  caps.max_label_bytes = 3;
  json body = Minimal();
  body["labels"] = {{"abc", "xyz"}};
  EXPECT_TRUE(Parse(body, caps));
  body["labels"] = {{"abc", "wxyz"}};
  ExpectTooLarge(body, caps, "labels.abc");
  body["labels"] = {{"abcd", "x"}};
  ExpectTooLarge(body, caps, "labels.abcd");
  body["labels"] = {{"a", "x"}, {"b", "y"}};
  ExpectTooLarge(body, caps, "labels");
}

TEST(RequestCaps, TypeErrorsComeBeforeSizeErrors) {
  RequestCaps caps;
  caps.max_stdin_bytes = 1;
  json body = Minimal();
  body["stdin"] = "too long";
  body["network"] = 1;
  EXPECT_EQ(Refused(body, caps).code, "invalid_request");
}

TEST(RequestErrorJson, Shape) {
  RequestError e = Refused({{"language", "python"}, {"code", 1}});
  EXPECT_EQ(ToJson(e), json::parse(R"({"error": {"code": "invalid_request", "field": "code",
                                       "message": "code: expected a string, got number"}})"));
}

// ---- session_id in an execution request -------------------------------------------------------

TEST(RequestFromJson, SessionIdRunsCodeWithoutALanguage) {
  auto r = Parse({{"session_id", "se_1"}, {"code", "x + 1"}, {"stdin", "a\n"}});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->session_id, "se_1");
  EXPECT_EQ(r->language, "");
  EXPECT_EQ(r->code, "x + 1");
  EXPECT_EQ(r->stdin_data, "a\n");
  auto with_language = Parse({{"session_id", "se_1"}, {"language", "python"}, {"code", "1"}});
  ASSERT_TRUE(with_language);
  EXPECT_EQ(with_language->language, "python");
  // Null is left out: the language is required again.
  ExpectInvalid({{"session_id", nullptr}, {"code", "1"}}, "language", "language: required");
}

TEST(RequestFromJson, SessionIdRefusesWhatTheSessionFixed) {
  ExpectInvalid({{"session_id", ""}, {"code", "1"}}, "session_id", "session_id: must not be empty");
  ExpectInvalid({{"session_id", 7}, {"code", "1"}}, "session_id",
                "session_id: expected a string, got number");
  ExpectInvalid({{"session_id", "se_1"}}, "code", "code: required (or files)");
  for (const char* key : {"files", "entry", "args", "env", "compile_limits", "network"}) {
    json body = {{"session_id", "se_1"}, {"code", "1"}};
    body[key] = key == std::string("network") ? json(true) : json::object();
    ExpectInvalid(body, key,
                  std::string(key) + ": not with session_id (the session's creation sets it)");
  }
}

// ---- ParseSessionRequest ----------------------------------------------------------------------

std::expected<SessionCreateRequest, RequestError> ParseSession(const json& body,
                                                               const RequestCaps& caps = {}) {
  return ParseSessionRequest(body, caps);
}

void ExpectSessionInvalid(const json& body, const std::string& field,
                          const std::string& message_start) {
  auto r = ParseSession(body);
  ASSERT_FALSE(r) << body.dump();
  EXPECT_EQ(r.error().code, "invalid_request") << body.dump();
  EXPECT_EQ(r.error().http_status, 400);
  EXPECT_EQ(r.error().field, field) << body.dump();
  EXPECT_TRUE(r.error().message.starts_with(message_start)) << r.error().message;
}

TEST(ParseSessionRequest, AcceptsTheFullShape) {
  auto r = ParseSession({{"language", "py"},
                         {"version", "3"},
                         {"limits", {{"memory", "128M"}, {"wall_time", 2000}}},
                         {"env", {{"K", "V"}}},
                         {"files", {{{"name", "data.txt"}, {"content", "abc"}}}},
                         {"labels", {{"notebook", "n1"}}},
                         {"lifetime", "2h"},
                         {"idle_timeout", 60000},
                         {"exclusive", "notebook"},
                         {"network", false}});
  ASSERT_TRUE(r) << r.error().message;
  const SessionRequest& s = r->request;
  EXPECT_EQ(s.language, "py");
  EXPECT_EQ(s.version, "3");
  EXPECT_EQ(s.limits[Limit::kMemory], 128u << 20);
  EXPECT_EQ(s.limits[Limit::kWallTime], 2000u);
  EXPECT_EQ(s.env, (std::map<std::string, std::string>{{"K", "V"}}));
  ASSERT_EQ(s.files.size(), 1u);
  EXPECT_EQ(s.files[0].name, "data.txt");
  EXPECT_EQ(s.files[0].content, "abc");
  EXPECT_EQ(s.labels, (std::map<std::string, std::string>{{"notebook", "n1"}}));
  EXPECT_EQ(s.lifetime, std::chrono::hours(2));
  EXPECT_EQ(s.idle_timeout, std::chrono::minutes(1));
  EXPECT_FALSE(s.network);
  EXPECT_EQ(r->exclusive, "notebook");
}

TEST(ParseSessionRequest, MinimalLeavesTheManagersDefaults) {
  auto r = ParseSession({{"language", "python"}, {"lifetime", nullptr}});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->request.lifetime.count(), 0);
  EXPECT_EQ(r->request.idle_timeout.count(), 0);
  EXPECT_TRUE(r->request.limits.empty());
  EXPECT_EQ(r->exclusive, "");
}

TEST(ParseSessionRequest, ErrorsNameTheField) {
  ExpectSessionInvalid(json::array(), "", "the request body must be a JSON object");
  ExpectSessionInvalid(json::object(), "language", "language: required");
  ExpectSessionInvalid({{"language", ""}}, "language", "language: must not be empty");
  ExpectSessionInvalid({{"language", "python"}, {"code", "1"}}, "code",
                       "code: unknown field (known: language, version");
  ExpectSessionInvalid({{"language", "python"}, {"limits", {{"memory", "lots"}}}}, "limits.memory",
                       "limits.memory: ");
  ExpectSessionInvalid({{"language", "python"}, {"limits", {{"bogus", 1}}}}, "limits.bogus",
                       "limits.bogus: unknown limit");
  ExpectSessionInvalid({{"language", "python"}, {"lifetime", "soon"}}, "lifetime", "lifetime: ");
  ExpectSessionInvalid({{"language", "python"}, {"lifetime", 1.5}}, "lifetime",
                       "lifetime: expected a whole number of ms");
  ExpectSessionInvalid({{"language", "python"}, {"idle_timeout", -1}}, "idle_timeout",
                       "idle_timeout: must not be negative");
  ExpectSessionInvalid({{"language", "python"}, {"idle_timeout", 0}}, "idle_timeout",
                       "idle_timeout: ");
  ExpectSessionInvalid({{"language", "python"}, {"exclusive", "user"}}, "exclusive",
                       "exclusive: names no label of this session");
  ExpectSessionInvalid({{"language", "python"}, {"exclusive", 3}}, "exclusive",
                       "exclusive: expected a string");
  ExpectSessionInvalid({{"language", "python"}, {"network", "yes"}}, "network",
                       "network: expected a boolean");
  ExpectSessionInvalid({{"language", "python"}, {"files", {{{"name", "../x"}, {"content", ""}}}}},
                       "files[0].name", "files[0].name: ");
  ExpectSessionInvalid({{"language", "python"}, {"env", {{"A=B", "1"}}}}, "env.A=B",
                       "env.A=B: invalid variable name");
  ExpectSessionInvalid({{"language", "python"}, {"labels", {{"k", 1}}}}, "labels.k",
                       "labels.k: expected a string");
}

TEST(ParseSessionRequest, CapsApply) {
  RequestCaps caps;
  caps.max_labels = 1;
  auto r = ParseSession({{"language", "python"}, {"labels", {{"a", "1"}, {"b", "2"}}}}, caps);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "too_large");
  EXPECT_EQ(r.error().http_status, 413);
  EXPECT_EQ(r.error().field, "labels");
}

// ---- SessionExecutionFromJson -----------------------------------------------------------------

TEST(SessionExecutionFromJson, AcceptsCodeStdinLimitsLabels) {
  auto r = SessionExecutionFromJson({{"code", "x"},
                                     {"stdin", "a\n"},
                                     {"limits", {{"wall_time", "1s"}, {"output", "1K"}}},
                                     {"labels", {{"cell", "3"}}}},
                                    "se_1", {});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->session_id, "se_1");
  EXPECT_EQ(r->code, "x");
  EXPECT_EQ(r->stdin_data, "a\n");
  EXPECT_EQ(r->limits[Limit::kWallTime], 1000u);
  EXPECT_EQ(r->limits[Limit::kOutput], 1024u);
  EXPECT_EQ(r->labels, (std::map<std::string, std::string>{{"cell", "3"}}));
}

TEST(SessionExecutionFromJson, ErrorsNameTheField) {
  auto refused = [](const json& body) {
    auto r = SessionExecutionFromJson(body, "se_1", {});
    EXPECT_FALSE(r) << body.dump();
    return r ? RequestError{} : r.error();
  };
  EXPECT_EQ(refused(json::object()).message, "code: required");
  EXPECT_EQ(refused({{"code", ""}}).message, "code: must not be empty");
  EXPECT_EQ(refused({{"code", "1"}, {"files", json::array()}}).field, "files");
  RequestError memory = refused({{"code", "1"}, {"limits", {{"memory", "1G"}}}});
  EXPECT_EQ(memory.field, "limits.memory");
  EXPECT_TRUE(memory.message.starts_with("limits.memory: set for the whole session"))
      << memory.message;
  EXPECT_EQ(refused({{"code", "1"}, {"limits", {{"wall_time", "x"}}}}).field, "limits.wall_time");
  RequestCaps caps;
  caps.max_stdin_bytes = 2;
  auto big = SessionExecutionFromJson({{"code", "1"}, {"stdin", "abc"}}, "se_1", caps);
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().code, "too_large");
  EXPECT_EQ(big.error().field, "stdin");
}

}  // namespace
}  // namespace polyrun::engine
