#include "server/piston.h"

#include <gtest/gtest.h>

#include <csignal>

#include "engine/result_json.h"
#include "util/base64.h"

namespace polyrun::server {
namespace {

using engine::Event;
using engine::ExecutionResult;
using engine::Status;
using languages::Limit;
using nlohmann::json;

json Body(json files = {{{"name", "main.py"}, {"content", "print(1)"}}}) {
  return {{"language", "python"}, {"version", "3.11.2"}, {"files", std::move(files)}};
}

std::expected<engine::ExecutionRequest, PistonError> Parse(const json& body,
                                                           const engine::RequestCaps& caps = {}) {
  return PistonExecuteFromJson(body, caps);
}

void ExpectBad(const json& body, const std::string& message, int status = 400,
               const engine::RequestCaps& caps = {}) {
  auto r = Parse(body, caps);
  ASSERT_FALSE(r) << body.dump();
  EXPECT_EQ(r.error().http_status, status) << body.dump();
  EXPECT_EQ(r.error().message, message) << body.dump();
}

// ---- execute request ------------------------------------------------------------------------

TEST(PistonExecute, ReadmeExample) {
  auto r = Parse(json::parse(R"js({
    "language": "js", "version": "15.10.0",
    "files": [{"name": "my_cool_code.js", "content": "console.log(process.argv)"}],
    "stdin": "", "args": ["1", "2", "3"],
    "compile_timeout": 10000, "run_timeout": 3000,
    "compile_cpu_time": 10000, "run_cpu_time": 3000,
    "compile_memory_limit": -1, "run_memory_limit": -1})js"));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->language, "js");
  EXPECT_EQ(r->version, "15.10.0");
  ASSERT_EQ(r->files.size(), 1u);
  EXPECT_EQ(r->files[0].name, "my_cool_code.js");
  EXPECT_EQ(r->files[0].content, "console.log(process.argv)");
  EXPECT_TRUE(r->entry.empty());
  EXPECT_EQ(r->args, (std::vector<std::string>{"1", "2", "3"}));
  EXPECT_EQ(r->stdin_data, "\n");
  EXPECT_EQ(r->limits[Limit::kWallTime], 3000u);
  EXPECT_EQ(r->limits[Limit::kCpuTime], 3000u);
  EXPECT_EQ(r->compile_limits[Limit::kWallTime], 10000u);
  EXPECT_EQ(r->compile_limits[Limit::kCpuTime], 10000u);
  // -1: "no limit" in Piston, left to our defaults and ceiling.
  EXPECT_FALSE(r->limits[Limit::kMemory].has_value());
  EXPECT_FALSE(r->compile_limits[Limit::kMemory].has_value());
}

TEST(PistonExecute, MemoryLimitsInBytes) {
  json body = Body();
  body["run_memory_limit"] = 134217728;
  body["compile_memory_limit"] = 536870912;
  auto r = Parse(body);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->limits[Limit::kMemory], 128u << 20);
  EXPECT_EQ(r->compile_limits[Limit::kMemory], 512u << 20);
  body["run_memory_limit"] = -2;  // any negative: Piston passes no --cg-mem
  EXPECT_FALSE(Parse(body).value().limits[Limit::kMemory].has_value());
}

TEST(PistonExecute, ZeroAndNullLimitsAreNotGiven) {
  json body = Body();
  body["run_timeout"] = 0;
  body["run_cpu_time"] = nullptr;
  body["compile_timeout"] = 0.0;
  auto r = Parse(body);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_TRUE(r->limits.empty());
  EXPECT_TRUE(r->compile_limits.empty());
}

TEST(PistonExecute, BadLimits) {
  json body = Body();
  body["run_timeout"] = "3s";
  ExpectBad(body, "If specified, run_timeout must be a number");
  body["run_timeout"] = -1;
  ExpectBad(body, "run_timeout must be non-negative");
  body["run_timeout"] = 100ull * 24 * 3600 * 1000;
  ExpectBad(body, "run_timeout: 2400h is out of range (1ms to 24h)");
  body["run_timeout"] = 0.5;
  ExpectBad(body, "run_timeout: 0ms is out of range (1ms to 24h)");
  body["run_timeout"] = 2500.9;
  EXPECT_EQ(Parse(body).value().limits[Limit::kWallTime], 2500u);
  body.erase("run_timeout");
  body["compile_memory_limit"] = 1024;
  ExpectBad(body, "compile_memory_limit: 1K is out of range (8M to 1T)");
  body["compile_memory_limit"] = 1e300;
  EXPECT_FALSE(Parse(body));
  body.erase("compile_memory_limit");
  body["compile_cpu_time"] = true;
  ExpectBad(body, "If specified, compile_cpu_time must be a number");
}

TEST(PistonExecute, LanguageAndVersionAreRequiredStrings) {
  ExpectBad({{"version", "*"}, {"files", json::array()}}, "language is required as a string");
  ExpectBad({{"language", ""}, {"version", "*"}}, "language is required as a string");
  ExpectBad({{"language", 1}, {"version", "*"}}, "language is required as a string");
  ExpectBad({{"language", "python"}}, "version is required as a string");
  ExpectBad({{"language", "python"}, {"version", 3}}, "version is required as a string");
  ExpectBad(json::array(), "the request body must be a JSON object");
}

TEST(PistonExecute, VersionSelectorsBecomePrefixes) {
  auto version = [](const std::string& v) {
    json body = Body();
    body["version"] = v;
    auto r = Parse(body);
    return r ? r->version : "error: " + r.error().message;
  };
  EXPECT_EQ(version("*"), "");
  EXPECT_EQ(version("x"), "");
  EXPECT_EQ(version("X"), "");
  EXPECT_EQ(version("3.x"), "3.");
  EXPECT_EQ(version("3.10.x"), "3.10.");
  EXPECT_EQ(version("3.10.*"), "3.10.");
  EXPECT_EQ(version("3"), "3");
  EXPECT_EQ(version("3.10.4"), "3.10.4");
  EXPECT_EQ(version("^3.10"),
            "error: version \"^3.10\" is a range; give \"*\" or a version prefix such as "
            "\"3.10\"");
  EXPECT_TRUE(version(">=3").starts_with("error: "));
}

TEST(PistonExecute, FilesShape) {
  ExpectBad({{"language", "python"}, {"version", "*"}}, "files is required as an array");
  ExpectBad(Body("main.py"), "files is required as an array");
  ExpectBad(Body(json::array()), "files must include at least one utf8 encoded file");
  ExpectBad(Body({"print(1)"}), "files[0] must be an object");
  ExpectBad(Body({{{"name", "a.py"}, {"content", "x"}}, {{"name", "b.py"}}}),
            "files[1].content is required as a string");
  ExpectBad(Body({{{"name", "a.py"}, {"content", 5}}}), "files[0].content is required as a string");
  ExpectBad(Body({{{"name", 5}, {"content", "x"}}}), "files[0].name must be a string");
  ExpectBad(Body({{{"content", "x"}, {"encoding", "utf-8"}}}),
            "files[0].encoding must be \"utf8\", \"base64\" or \"hex\"");
  ExpectBad(Body({{{"name", "../x.py"}, {"content", "x"}}}),
            "files[0].name: file name \"../x.py\" has an empty, \".\" or \"..\" component");
  ExpectBad(Body({{{"name", "a.py"}, {"content", "x"}}, {{"name", "a.py"}, {"content", "y"}}}),
            "files[1].name \"a.py\" is used twice");
}

TEST(PistonExecute, EmptyContentIsAFile) {
  auto r = Parse(Body({{{"name", "main.py"}, {"content", ""}}}));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->files[0].content, "");
}

TEST(PistonExecute, HexAndBase64FilesDecodeToBytes) {
  std::string bytes;
  for (int i = 0; i < 256; ++i) bytes.push_back(static_cast<char>(i));
  std::string hex;
  for (unsigned char c : bytes) {
    static constexpr char kDigits[] = "0123456789abcdef";
    hex += kDigits[c >> 4];
    hex += kDigits[c & 15];
  }
  auto r =
      Parse(Body({{{"name", "main.py"}, {"content", "print(1)"}},
                  {{"name", "a.bin"}, {"content", hex}, {"encoding", "hex"}},
                  {{"name", "b.bin"}, {"content", Base64Encode(bytes)}, {"encoding", "base64"}},
                  {{"name", "c.bin"}, {"content", "DEADbeef"}, {"encoding", "hex"}}}));
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->files.size(), 4u);
  EXPECT_EQ(r->files[1].content, bytes);
  EXPECT_EQ(r->files[2].content, bytes);
  EXPECT_EQ(r->files[3].content, "\xde\xad\xbe\xef");
}

TEST(PistonExecute, BadHexAndBase64NameTheFile) {
  ExpectBad(Body({{{"content", "x"}}, {{"content", "abc"}, {"encoding", "hex"}}}),
            "files[1].content: hex: odd number of digits");
  ExpectBad(Body({{{"content", "x"}}, {{"content", "zz"}, {"encoding", "hex"}}}),
            "files[1].content: hex: invalid digit at offset 0");
  ExpectBad(Body({{{"content", "x"}}, {{"content", "A!=="}, {"encoding", "base64"}}}),
            "files[1].content: base64: invalid character at offset 1");
}

TEST(PistonExecute, TheFirstUtf8FileIsTheEntryAndComesFirst) {
  auto r = Parse(Body({{{"name", "data.bin"}, {"content", "AAE="}, {"encoding", "base64"}},
                       {{"name", "main.py"}, {"content", "print(1)"}},
                       {{"name", "util.py"}, {"content", "x = 1"}}}));
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->files.size(), 3u);
  EXPECT_EQ(r->files[0].name, "main.py");
  EXPECT_EQ(r->files[1].name, "data.bin");
  EXPECT_EQ(r->files[2].name, "util.py");
  EXPECT_TRUE(r->entry.empty());
  ExpectBad(Body({{{"content", "AAE="}, {"encoding", "base64"}}}),
            "files must include at least one utf8 encoded file");
}

TEST(PistonExecute, UnnamedFiles) {
  auto r = Parse(Body({{{"content", "AAE="}, {"encoding", "base64"}},
                       {{"content", "import x"}},
                       {{"content", "y = 1"}, {"name", ""}}}));
  ASSERT_TRUE(r) << r.error().message;
  // The entry is left for the caller to name after the language; the rest get Piston's names.
  EXPECT_EQ(r->files[0].name, "");
  EXPECT_EQ(r->files[0].content, "import x");
  EXPECT_EQ(r->files[1].name, "file0.code");
  EXPECT_EQ(r->files[2].name, "file2.code");
  ExpectBad(
      Body({{{"content", "x"}}, {{"content", "y"}}, {{"name", "file1.code"}, {"content", "z"}}}),
      "files[1].name \"file1.code\" is used twice");
}

TEST(PistonExecute, StdinGetsATrailingNewline) {
  json body = Body();
  body["stdin"] = "5";
  EXPECT_EQ(Parse(body).value().stdin_data, "5\n");
  body["stdin"] = "5\n";
  EXPECT_EQ(Parse(body).value().stdin_data, "5\n");
  body["stdin"] = 5;
  ExpectBad(body, "stdin must be a string");
}

TEST(PistonExecute, ArgsAreStrings) {
  json body = Body();
  body["args"] = "1 2";
  ExpectBad(body, "args must be an array");
  body["args"] = {"1", 2};
  ExpectBad(body, "args[1] must be a string");
  body["args"] = nullptr;
  EXPECT_TRUE(Parse(body).value().args.empty());
}

TEST(PistonExecute, UnknownKeysAreIgnoredLikePiston) {
  json body = Body();
  body["type"] = "init";
  body["runtime"] = "node";
  EXPECT_TRUE(Parse(body));
}

TEST(PistonExecute, CapsAreTooLarge) {
  engine::RequestCaps caps;
  caps.max_files = 1;
  ExpectBad(Body({{{"content", "x"}}, {{"content", "y"}}}), "files: 2 files exceed the limit of 1",
            413, caps);
  caps = {};
  caps.max_stdin_bytes = 2;
  json body = Body();
  body["stdin"] = "ab";  // exactly the cap: the newline Piston adds does not count
  auto r = Parse(body, caps);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->stdin_data, "ab\n");
  body["stdin"] = "abc";
  ExpectBad(body, "stdin: 3 bytes exceed the limit of 2", 413, caps);
  caps = {};
  caps.max_code_bytes = 4;
  ExpectBad(Body({{{"content", "12"}}, {{"content", "345"}}}),
            "files[1].content: the files' contents total more than 4 bytes", 413, caps);
  EXPECT_TRUE(Parse(Body({{{"content", "12"}}, {{"content", "34"}}}), caps));
  caps = {};
  caps.max_args = 1;
  body = Body();
  body["args"] = {"a", "b"};
  ExpectBad(body, "args: 2 arguments exceed the limit of 1", 413, caps);
}

TEST(PistonExecute, ErrorJson) {
  EXPECT_EQ(ToJson(PistonError{400, "html-5.0.0 runtime is unknown"}),
            json::parse(R"({"message": "html-5.0.0 runtime is unknown"})"));
}

// ---- results --------------------------------------------------------------------------------

ExecutionResult ResultWith(Status status) {
  ExecutionResult r;
  r.language = "python";
  r.version = "3.11.2";
  r.status = status;
  r.usage = {154, 8, 1160000, "cold"};
  return r;
}

json RunStage(const ExecutionResult& r) {
  return PistonResultToJson(r)["run"];
}

TEST(PistonResult, OkMatchesPistonsShape) {
  ExecutionResult r = ResultWith(Status::kOk);
  r.exit_code = 0;
  r.stdout_text = "hi\n";
  r.outputs = {{"stdout", "hi\n", 3, nullptr}};
  r.reason = "exited with status 0";
  EXPECT_EQ(PistonResultToJson(r), json::parse(R"({
    "language": "python", "version": "3.11.2",
    "run": {"stdout": "hi\n", "stderr": "", "output": "hi\n", "code": 0, "signal": null,
            "message": null, "status": null, "cpu_time": 8, "wall_time": 154,
            "memory": 1160000}})"));
}

TEST(PistonResult, OutputIsInterleavedInArrivalOrder) {
  ExecutionResult r = ResultWith(Status::kRuntimeError);
  r.exit_code = 1;
  r.stdout_text = "a\nc\n";
  r.stderr_text = "b\n";
  r.outputs = {
      {"stdout", "a\n", 1, nullptr}, {"stderr", "b\n", 2, nullptr}, {"stdout", "c\n", 3, nullptr}};
  json run = RunStage(r);
  EXPECT_EQ(run["output"], "a\nb\nc\n");
  EXPECT_EQ(run["stdout"], "a\nc\n");
  EXPECT_EQ(run["stderr"], "b\n");
}

TEST(PistonResult, EveryStatusHasItsLetters) {
  struct Case {
    Status status;
    std::optional<int> exit_code;
    int signal;
    bool out_cut, err_cut;
    json letters, code, signal_name;
  };
  const std::vector<Case> cases = {
      {Status::kOk, 0, 0, false, false, nullptr, 0, nullptr},
      {Status::kRuntimeError, 1, 0, false, false, "RE", 1, nullptr},
      {Status::kRuntimeError, std::nullopt, SIGSEGV, false, false, "SG", nullptr, "SIGSEGV"},
      {Status::kTimeout, std::nullopt, SIGKILL, false, false, "TO", nullptr, "SIGKILL"},
      {Status::kTimeout, std::nullopt, 0, false, false, "TO", nullptr, "SIGKILL"},
      {Status::kMemoryLimit, std::nullopt, SIGKILL, false, false, "SG", nullptr, "SIGKILL"},
      {Status::kOutputLimit, std::nullopt, SIGKILL, true, false, "OL", nullptr, "SIGKILL"},
      {Status::kOutputLimit, std::nullopt, SIGKILL, false, true, "EL", nullptr, "SIGKILL"},
      {Status::kOutputLimit, std::nullopt, SIGKILL, true, true, "OL", nullptr, "SIGKILL"},
      {Status::kCancelled, std::nullopt, SIGKILL, false, false, "SG", nullptr, "SIGKILL"},
      {Status::kInternalError, std::nullopt, 0, false, false, "XX", nullptr, nullptr},
      {Status::kRejected, std::nullopt, 0, false, false, "XX", nullptr, nullptr},
      {Status::kQueued, std::nullopt, 0, false, false, "XX", nullptr, nullptr},
      {Status::kRunning, std::nullopt, 0, false, false, "XX", nullptr, nullptr},
  };
  for (const auto& c : cases) {
    ExecutionResult r = ResultWith(c.status);
    r.exit_code = c.exit_code;
    r.signal = c.signal;
    r.stdout_truncated = c.out_cut;
    r.stderr_truncated = c.err_cut;
    r.reason = "why";
    json run = RunStage(r);
    SCOPED_TRACE(std::string(engine::StatusName(c.status)));
    EXPECT_EQ(run["status"], c.letters);
    EXPECT_EQ(run["code"], c.code);
    EXPECT_EQ(run["signal"], c.signal_name);
    EXPECT_EQ(run["message"], c.status == Status::kOk ? json(nullptr) : json("why"));
  }
}

TEST(PistonResult, MessageFallsBackToTheErrorSummary) {
  ExecutionResult r = ResultWith(Status::kRuntimeError);
  r.exit_code = 1;
  r.error = languages::ErrorInfo{
      "exception", "ZeroDivisionError", "division by zero", "main.py", 1, 0, {}};
  EXPECT_EQ(RunStage(r)["message"], "ZeroDivisionError: division by zero");
  r.error.reset();
  EXPECT_EQ(RunStage(r)["message"], nullptr);
}

TEST(PistonResult, CompiledLanguagesHaveACompileStage) {
  ExecutionResult r = ResultWith(Status::kOk);
  r.exit_code = 0;
  r.compile = engine::StageResult{};
  r.compile->exit_code = 0;
  r.compile->stderr_text = "warning: unused\n";
  r.compile->usage = {300, 250, 50000000, "cold"};
  json out = PistonResultToJson(r);
  ASSERT_TRUE(out.contains("compile"));
  EXPECT_EQ(out["compile"]["status"], nullptr);
  EXPECT_EQ(out["compile"]["message"], nullptr);
  EXPECT_EQ(out["compile"]["output"], "warning: unused\n");
  EXPECT_EQ(out["compile"]["wall_time"], 300);
  EXPECT_EQ(out["compile"]["code"], 0);
  EXPECT_EQ(out["run"]["wall_time"], 154);
  EXPECT_FALSE(PistonResultToJson(ResultWith(Status::kOk)).contains("compile"));
}

TEST(PistonResult, AFailedCompileIsRepeatedAsRun) {
  ExecutionResult r = ResultWith(Status::kCompileError);
  r.reason = "compilation failed: main.c:3: expected ';'";
  r.compile = engine::StageResult{};
  r.compile->status = Status::kCompileError;
  r.compile->exit_code = 1;
  r.compile->stdout_text = "o";
  r.compile->stderr_text = "main.c:3: error: expected ';'\n";
  json out = PistonResultToJson(r);
  EXPECT_EQ(out["compile"]["status"], "RE");
  EXPECT_EQ(out["compile"]["code"], 1);
  EXPECT_EQ(out["compile"]["output"], "omain.c:3: error: expected ';'\n");
  EXPECT_EQ(out["compile"]["message"], "compilation failed: main.c:3: expected ';'");
  EXPECT_EQ(out["run"], out["compile"]);

  r.status = Status::kTimeout;
  r.compile->status = Status::kTimeout;
  r.compile->exit_code.reset();
  r.compile->signal = SIGKILL;
  out = PistonResultToJson(r);
  EXPECT_EQ(out["compile"]["status"], "TO");
  EXPECT_EQ(out["compile"]["signal"], "SIGKILL");
  EXPECT_EQ(out["compile"]["code"], nullptr);
}

TEST(PistonResult, RejectedIsA400) {
  ExecutionResult r = ResultWith(Status::kRejected);
  r.reason = "language: unknown language \"html\"";
  PistonError e = PistonRejection(r).value_or(PistonError{0, "(not rejected)"});
  EXPECT_EQ(e.http_status, 400);
  EXPECT_EQ(e.message, "language: unknown language \"html\"");
  EXPECT_FALSE(PistonRejection(ResultWith(Status::kRuntimeError)));
  EXPECT_FALSE(PistonRejection(ResultWith(Status::kInternalError)));
}

TEST(PistonRuntimes, Shape) {
  EXPECT_EQ(PistonRuntimesToJson({{"bash", "5.2.15", {"sh"}}, {"python", "3.11.2", {}}}),
            json::parse(R"([{"language": "bash", "version": "5.2.15", "aliases": ["sh"]},
                            {"language": "python", "version": "3.11.2", "aliases": []}])"));
  EXPECT_EQ(PistonRuntimesToJson({}), json::array());
}

// ---- WebSocket ------------------------------------------------------------------------------

const char* kInit =
    R"({"type": "init", "language": "bash", "version": "*", "files": [{"content": "cat"}],
        "stdin": "ignored"})";

Event Ev(Event::Kind kind, json payload = nullptr, std::string data = {}, std::string stream = {}) {
  Event e;
  e.execution_id = "ex_1";
  e.kind = kind;
  e.payload = std::move(payload);
  e.data = std::move(data);
  e.stream = std::move(stream);
  return e;
}

void ExpectClose(const PistonStep& step, int code, const std::string& reason) {
  PistonClose close = step.close.value_or(PistonClose{0, "(not closed)"});
  EXPECT_EQ(close.code, code);
  EXPECT_EQ(close.reason, reason);
}

void ExpectError(const PistonStep& step, const std::string& message) {
  ASSERT_EQ(step.send.size(), 1u);
  EXPECT_EQ(step.send[0], json({{"type", "error"}, {"message", message}}));
  ExpectClose(step, kPistonNotifiedError, "Notified Error");
}

TEST(PistonWs, CloseCodesArePistons) {
  EXPECT_EQ(kPistonAlreadyInitialized, 4000);
  EXPECT_EQ(kPistonInitTimeout, 4001);
  EXPECT_EQ(kPistonNotifiedError, 4002);
  EXPECT_EQ(kPistonNotInitialized, 4003);
  EXPECT_EQ(kPistonStdinOnly, 4004);
  EXPECT_EQ(kPistonInvalidSignal, 4005);
  EXPECT_EQ(kPistonJobCompleted, 4999);
  EXPECT_EQ(kPistonInitDeadline, std::chrono::seconds(1));
}

TEST(PistonWs, ReadmeConversation) {
  PistonSession s({});
  PistonStep init = s.OnMessage(kInit);
  ASSERT_TRUE(init.start);
  EXPECT_TRUE(init.send.empty());
  EXPECT_FALSE(init.close);
  const engine::ExecutionRequest req = init.start.value_or(engine::ExecutionRequest{});
  EXPECT_EQ(req.language, "bash");
  EXPECT_EQ(req.version, "");
  ASSERT_EQ(req.files.size(), 1u);
  EXPECT_EQ(req.files[0].content, "cat");
  EXPECT_EQ(req.stdin_data, "");  // an interactive job reads data messages only
  EXPECT_FALSE(s.OnInitDeadline().close);

  EXPECT_TRUE(s.OnEvent(Ev(Event::Kind::kQueued, {{"language", "bash"}})).send.empty());
  PistonStep started =
      s.OnEvent(Ev(Event::Kind::kStarted, {{"version", "5.2.15"}, {"compile_limits", nullptr}}));
  ASSERT_EQ(started.send.size(), 2u);
  EXPECT_EQ(started.send[0],
            json::parse(R"({"type":"runtime","language":"bash","version":"5.2.15"})"));
  EXPECT_EQ(started.send[1], json::parse(R"({"type":"stage","stage":"run"})"));

  PistonStep data = s.OnMessage(R"({"type":"data", "stream":"stdin", "data":"Hello World!"})");
  EXPECT_EQ(data.stdin_data, "Hello World!");
  EXPECT_FALSE(data.close);
  PistonStep out = s.OnEvent(Ev(Event::Kind::kStdout, nullptr, "Hello World!"));
  ASSERT_EQ(out.send.size(), 1u);
  EXPECT_EQ(out.send[0], json::parse(R"({"type":"data","stream":"stdout","data":"Hello World!"})"));
  EXPECT_EQ(s.OnEvent(Ev(Event::Kind::kStderr, nullptr, "e")).send[0]["stream"], "stderr");

  PistonStep sig = s.OnMessage(R"({"type":"signal","signal":"SIGKILL"})");
  EXPECT_EQ(sig.signal, SIGKILL);
  PistonStep fin = s.OnEvent(
      Ev(Event::Kind::kFinished, {{"status", "cancelled"}, {"signal", SIGKILL}, {"reason", "x"}}));
  ASSERT_EQ(fin.send.size(), 1u);
  EXPECT_EQ(fin.send[0],
            json::parse(R"({"type":"exit","stage":"run","code":null,"signal":"SIGKILL"})"));
  ExpectClose(fin, kPistonJobCompleted, "Job Completed");
  EXPECT_TRUE(s.closed());
  // After the close nothing more happens.
  PistonStep late = s.OnMessage(R"({"type":"data","stream":"stdin","data":"x"})");
  EXPECT_FALSE(late.close);
  EXPECT_FALSE(late.stdin_data);
}

TEST(PistonWs, CompiledLanguageStages) {
  PistonSession s({});
  ASSERT_TRUE(s.OnMessage(kInit).start);
  PistonStep started = s.OnEvent(
      Ev(Event::Kind::kStarted, {{"version", "12.2.0"}, {"compile_limits", {{"memory", 1}}}}));
  ASSERT_EQ(started.send.size(), 1u);  // the compile stage comes next, not the run
  EXPECT_EQ(started.send[0]["type"], "runtime");
  EXPECT_EQ(s.OnEvent(Ev(Event::Kind::kCompileStarted)).send[0],
            json::parse(R"({"type":"stage","stage":"compile"})"));
  EXPECT_EQ(s.OnEvent(Ev(Event::Kind::kCompileOutput, nullptr, "warn", "stderr")).send[0],
            json::parse(R"({"type":"data","stream":"stderr","data":"warn"})"));
  PistonStep compiled =
      s.OnEvent(Ev(Event::Kind::kCompileFinished, {{"status", "ok"}, {"exit_code", 0}}));
  ASSERT_EQ(compiled.send.size(), 2u);
  EXPECT_EQ(compiled.send[0],
            json::parse(R"({"type":"exit","stage":"compile","code":0,"signal":null})"));
  EXPECT_EQ(compiled.send[1], json::parse(R"({"type":"stage","stage":"run"})"));
  PistonStep fin = s.OnEvent(Ev(Event::Kind::kFinished, {{"status", "ok"}, {"exit_code", 0}}));
  EXPECT_EQ(fin.send.at(0), json::parse(R"({"type":"exit","stage":"run","code":0,"signal":null})"));
  ExpectClose(fin, kPistonJobCompleted, "Job Completed");
}

TEST(PistonWs, FailedCompileHasNoRunStage) {
  PistonSession s({});
  ASSERT_TRUE(s.OnMessage(kInit).start);
  s.OnEvent(Ev(Event::Kind::kStarted, {{"version", "1"}, {"compile_limits", json::object()}}));
  s.OnEvent(Ev(Event::Kind::kCompileStarted));
  PistonStep compiled =
      s.OnEvent(Ev(Event::Kind::kCompileFinished, {{"status", "compile_error"}, {"exit_code", 1}}));
  ASSERT_EQ(compiled.send.size(), 1u);
  EXPECT_EQ(compiled.send[0]["code"], 1);
  PistonStep fin = s.OnEvent(Ev(Event::Kind::kFinished, {{"status", "compile_error"}}));
  EXPECT_TRUE(fin.send.empty());
  ExpectClose(fin, kPistonJobCompleted, "Job Completed");
}

TEST(PistonWs, TimeoutExitIsSigkill) {
  PistonSession s({});
  ASSERT_TRUE(s.OnMessage(kInit).start);
  s.OnEvent(Ev(Event::Kind::kStarted, {{"version", "1"}, {"compile_limits", nullptr}}));
  PistonStep fin = s.OnEvent(Ev(Event::Kind::kFinished, {{"status", "timeout"}, {"signal", 9}}));
  EXPECT_EQ(fin.send.at(0),
            json::parse(R"({"type":"exit","stage":"run","code":null,"signal":"SIGKILL"})"));
}

TEST(PistonWs, RejectedAndInternalErrorsAreNotifiedErrors) {
  PistonSession s({});
  ASSERT_TRUE(s.OnMessage(kInit).start);
  ExpectError(s.OnEvent(Ev(Event::Kind::kFinished,
                           {{"status", "rejected"}, {"reason", "language: unknown language"}})),
              "language: unknown language");
  PistonSession t({});
  ASSERT_TRUE(t.OnMessage(kInit).start);
  t.OnEvent(Ev(Event::Kind::kStarted, {{"version", "1"}, {"compile_limits", nullptr}}));
  ExpectError(
      t.OnEvent(Ev(Event::Kind::kFinished, {{"status", "internal_error"}, {"reason", "boom"}})),
      "boom");
  PistonSession u({});
  ASSERT_TRUE(u.OnMessage(kInit).start);
  ExpectError(u.Fail("the queue is full"), "the queue is full");
  EXPECT_TRUE(u.Fail("again").send.empty());
}

TEST(PistonWs, InitRules) {
  PistonSession s({});
  ASSERT_TRUE(s.OnMessage(kInit).start);
  PistonStep again = s.OnMessage(kInit);
  EXPECT_FALSE(again.start);
  ExpectClose(again, kPistonAlreadyInitialized, "Already Initialized");

  PistonSession bad({});
  ExpectError(bad.OnMessage(R"({"type":"init","language":"bash","files":[]})"),
              "version is required as a string");
  PistonSession late({});
  ExpectClose(late.OnInitDeadline(), kPistonInitTimeout, "Initialization Timeout");
  EXPECT_FALSE(late.OnMessage(kInit).start);
}

TEST(PistonWs, DataAndSignalNeedAJob) {
  PistonSession s({});
  ExpectClose(s.OnMessage(R"({"type":"data","stream":"stdin","data":"x"})"), kPistonNotInitialized,
              "Not yet initialized");
  PistonSession t({});
  ExpectClose(t.OnMessage(R"({"type":"signal","signal":"SIGINT"})"), kPistonNotInitialized,
              "Not yet initialized");
}

TEST(PistonWs, DataOnlyToStdin) {
  PistonSession s({});
  ASSERT_TRUE(s.OnMessage(kInit).start);
  ExpectClose(s.OnMessage(R"({"type":"data","stream":"stdout","data":"x"})"), kPistonStdinOnly,
              "Can only write to stdin");
  PistonSession t({});
  ASSERT_TRUE(t.OnMessage(kInit).start);
  ExpectError(t.OnMessage(R"({"type":"data","stream":"stdin","data":5})"),
              "data is required as a string");
}

TEST(PistonWs, StdinIsCapped) {
  engine::RequestCaps caps;
  caps.max_stdin_bytes = 4;
  PistonSession s(caps);
  ASSERT_TRUE(s.OnMessage(kInit).start);
  EXPECT_EQ(s.OnMessage(R"({"type":"data","stream":"stdin","data":"ab"})").stdin_data, "ab");
  EXPECT_EQ(s.OnMessage(R"({"type":"data","stream":"stdin","data":"cd"})").stdin_data, "cd");
  ExpectError(s.OnMessage(R"({"type":"data","stream":"stdin","data":"e"})"),
              "stdin: more than 4 bytes written");
}

TEST(PistonWs, Signals) {
  PistonSession s({});
  ASSERT_TRUE(s.OnMessage(kInit).start);
  EXPECT_EQ(s.OnMessage(R"({"type":"signal","signal":"SIGTERM"})").signal, SIGTERM);
  EXPECT_EQ(s.OnMessage(R"({"type":"signal","signal":"SIGINT"})").signal, SIGINT);
  PistonStep bad = s.OnMessage(R"({"type":"signal","signal":"SIGNOPE"})");
  EXPECT_FALSE(bad.signal);
  ExpectClose(bad, kPistonInvalidSignal, "Invalid signal");
  PistonSession t({});
  ASSERT_TRUE(t.OnMessage(kInit).start);
  ExpectClose(t.OnMessage(R"({"type":"signal","signal":9})"), kPistonInvalidSignal,
              "Invalid signal");
}

TEST(PistonWs, MalformedMessages) {
  ExpectError(PistonSession({}).OnMessage("{not json"), "the message is not valid JSON");
  ExpectError(PistonSession({}).OnMessage("[1]"), "a message must be a JSON object");
  ExpectError(PistonSession({}).OnMessage(R"({"data":"x"})"), "type is required as a string");
  ExpectError(PistonSession({}).OnMessage(R"({"type":"resize"})"),
              "unknown message type \"resize\"");
}

}  // namespace
}  // namespace polyrun::server
