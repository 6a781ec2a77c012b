#include "languages/error_report.h"

#include <gtest/gtest.h>

namespace polyrun::languages {
namespace {

ErrorRules PythonRules() {
  ErrorRules r;
  r.frame = NamedRegex::Compile(
                R"re(^\s*File "(?P<file>[^"]+)", line (?P<line>\d+)(?:, in (?P<function>.+))?$)re")
                .value();
  r.exception =
      NamedRegex::Compile(R"re(^(?P<name>[A-Za-z_][A-Za-z0-9_.]*)(?:: (?P<message>.*))?$)re")
          .value();
  return r;
}

TEST(ParseRuntimeError, PythonTracebackKeepsOnlyUserFrames) {
  const std::string stderr_text =
      "Traceback (most recent call last):\n"
      "  File \"/work/main.py\", line 5, in <module>\n"
      "    run()\n"
      "  File \"/work/lib/util.py\", line 2, in run\n"
      "    json.loads('{')\n"
      "  File \"/usr/lib/python3.11/json/__init__.py\", line 346, in loads\n"
      "    return _default_decoder.decode(s)\n"
      "json.decoder.JSONDecodeError: Expecting property name: line 1 column 2 (char 1)\n";
  auto e = ParseRuntimeError(PythonRules(), stderr_text);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->name, "json.decoder.JSONDecodeError");
  EXPECT_EQ(e->message, "Expecting property name: line 1 column 2 (char 1)");
  EXPECT_EQ(e->file, "lib/util.py");
  EXPECT_EQ(e->line, 2);
  ASSERT_EQ(e->traceback.size(), 2u);
  EXPECT_EQ(e->traceback[0].file, "main.py");
  EXPECT_EQ(e->traceback[0].line, 5);
  EXPECT_EQ(e->traceback[1].function, "run");
}

TEST(ParseRuntimeError, LineOffsetIsRemoved) {
  ErrorRules r = PythonRules();
  r.line_offset = 3;
  auto e = ParseRuntimeError(r, "  File \"/work/main.py\", line 7, in <module>\nValueError: x\n");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->line, 4);
}

TEST(ParseRuntimeError, NodeStyleInnermostFirstWithHeaderLocation) {
  ErrorRules r;
  r.frame =
      NamedRegex::Compile(
          R"re(^\s+at (?:(?P<function>.*?) \()?(?P<file>[^()]+?):(?P<line>\d+):(?P<column>\d+)\)?$)re")
          .value();
  r.innermost_first = true;
  r.exception =
      NamedRegex::Compile(R"re(^(?P<name>[A-Za-z_$][A-Za-z0-9_$.]*): (?P<message>.*)$)re").value();
  r.exception_position = ErrorRules::Position::kBeforeFrames;
  r.location = NamedRegex::Compile(R"re(^(?P<file>/work/[^:]+):(?P<line>\d+)$)re").value();
  const std::string text =
      "/work/main.js:2\n  return x + 1;\n  ^\n\nReferenceError: x is not defined\n"
      "    at inner (/work/main.js:2:3)\n    at Object.<anonymous> (/work/main.js:5:1)\n"
      "    at Module._compile (node:internal/modules/cjs/loader:1256:14)\n\nNode.js v20\n";
  auto e = ParseRuntimeError(r, text);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->name, "ReferenceError");
  EXPECT_EQ(e->message, "x is not defined");
  EXPECT_EQ(e->file, "main.js");
  EXPECT_EQ(e->line, 2);
  EXPECT_EQ(e->column, 3);
  ASSERT_EQ(e->traceback.size(), 2u);
  EXPECT_EQ(e->traceback[0].line, 5);  // outermost first
  EXPECT_EQ(e->traceback[1].function, "inner");
}

TEST(ParseRuntimeError, NothingRecognisableIsNullopt) {
  EXPECT_FALSE(ParseRuntimeError(PythonRules(), "   just some indented text\n"));
  EXPECT_FALSE(ParseRuntimeError(ErrorRules{}, "Error: x\n"));
}

TEST(ParseDiagnostics, ReturnsEveryDiagnosticInOrder) {
  ErrorRules r;
  r.diagnostic =
      NamedRegex::Compile(
          R"re(^(?P<file>[^:\s][^:]*):(?P<line>\d+):(?P<column>\d+): (?P<severity>fatal error|error|warning|note): (?P<message>.*)$)re")
          .value();
  const std::string out =
      "main.c: In function 'main':\n"
      "main.c:4:12: error: expected ';' before 'printf'\n"
      "    4 |   int x = 1\n"
      "/work/util.h:2:1: warning: unused thing\n"
      "main.c:6:10: fatal error: nope.h: No such file or directory\n";
  auto d = ParseDiagnostics(r, out);
  ASSERT_EQ(d.size(), 3u);
  EXPECT_EQ(d[0].file, "main.c");
  EXPECT_EQ(d[0].line, 4);
  EXPECT_EQ(d[0].column, 12);
  EXPECT_EQ(d[0].severity, "error");
  EXPECT_EQ(d[0].message, "expected ';' before 'printf'");
  EXPECT_EQ(d[1].file, "util.h");
  EXPECT_EQ(d[1].severity, "warning");
  EXPECT_EQ(d[2].severity, "error");
}

TEST(UserFile, StripsTheWorkDirAndDropsOtherPaths) {
  EXPECT_EQ(UserFile("/work/a/b.py"), "a/b.py");
  EXPECT_EQ(UserFile("main.sh"), "main.sh");
  EXPECT_EQ(UserFile("./x.js"), "x.js");
  EXPECT_EQ(UserFile("/usr/lib/python3.11/json/decoder.py"), "");
  EXPECT_EQ(UserFile("node:internal/modules/cjs/loader"), "");
  EXPECT_EQ(UserFile("<frozen runpy>"), "");
}

}  // namespace
}  // namespace polyrun::languages
