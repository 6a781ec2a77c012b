// Every languages/<id>/tests/*.toml case, run through ./build/polyrun in the real sandbox.
// A case gives code (or files), stdin, args and env, and the exact outcome to expect.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <toml.hpp>

#include "polyrun_process.h"
#include "util/base64.h"

namespace polyrun::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct SelfTest {
  std::string language;
  std::string name;
  fs::path file;
};

std::vector<SelfTest> Discover() {
  std::vector<SelfTest> out;
  for (const auto& lang : fs::directory_iterator(POLYRUN_LANGUAGES_DIR)) {
    fs::path tests = lang.path() / "tests";
    if (!fs::is_directory(tests)) continue;
    for (const auto& f : fs::directory_iterator(tests)) {
      // session.toml drives a session (tests/sessions), not a one-shot run.
      if (f.path().extension() == ".toml" && f.path().filename() != "session.toml") {
        out.push_back({lang.path().filename().string(), f.path().stem().string(), f.path()});
      }
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.file < b.file; });
  return out;
}

class LanguageSelfTest : public ::testing::TestWithParam<SelfTest> {};

// A `check = true` case: `polyrun check --json` on the case's files, the entry's report.
void ExpectCheck(const ProcessResult& p, const toml::value& expect) {
  ASSERT_TRUE(p.exit_code == 0 || p.exit_code == 1) << p.err << p.out;
  json r = json::parse(p.out);
  const std::string context = r.dump(2);
  ASSERT_FALSE(r["files"].empty()) << context;
  const json& f = r["files"][0];
  ASSERT_TRUE(f["problem"].is_null()) << context;
  if (expect.contains("language")) {
    EXPECT_EQ(f["language"], toml::find<std::string>(expect, "language")) << context;
  }
  if (expect.contains("syntax_errors")) {
    EXPECT_EQ(f["syntax_errors"].size(), toml::find<size_t>(expect, "syntax_errors")) << context;
  }
  if (expect.contains("syntax_error_line")) {
    ASSERT_FALSE(f["syntax_errors"].empty()) << context;
    EXPECT_EQ(f["syntax_errors"][0]["line"], toml::find<int>(expect, "syntax_error_line"))
        << context;
    if (expect.contains("syntax_error_column")) {
      EXPECT_EQ(f["syntax_errors"][0]["column"], toml::find<int>(expect, "syntax_error_column"))
          << context;
    }
  }
  if (expect.contains("imports")) {
    std::vector<std::string> names;
    for (const auto& i : f["imports"]) names.push_back(i["name"]);
    EXPECT_EQ(names, toml::find<std::vector<std::string>>(expect, "imports")) << context;
  }
  if (expect.contains("missing")) {
    EXPECT_EQ(f["missing"].get<std::vector<std::string>>(),
              toml::find<std::vector<std::string>>(expect, "missing"))
        << context;
  }
  // The exit status speaks for every file checked, not just the entry.
  const bool findings = std::any_of(r["files"].begin(), r["files"].end(), [](const json& file) {
    return !file["syntax_errors"].empty() || !file["missing"].empty();
  });
  EXPECT_EQ(p.exit_code, findings ? 1 : 0) << context;
}

TEST_P(LanguageSelfTest, Passes) {
  const SelfTest& t = GetParam();
  const toml::value spec = toml::parse(t.file.string());
  TempDir dir;
  const bool check = toml::find_or<bool>(spec, "check", false);
  std::vector<std::string> args = {check ? "check" : "run", "--json", "-l", t.language};
  std::vector<std::string> file_args;
  if (spec.contains("code")) {
    args.push_back("-c");
    args.push_back(toml::find<std::string>(spec, "code"));
  } else {
    const std::string entry = toml::find<std::string>(spec, "entry");
    file_args.push_back(entry);
    for (const auto& f : toml::find<toml::array>(spec, "files")) {
      const std::string name = toml::find<std::string>(f, "name");
      std::string content = toml::find<std::string>(f, "content");
      if (toml::find_or<std::string>(f, "encoding", "utf8") == "base64") {
        auto bytes = Base64Decode(content);
        ASSERT_TRUE(bytes) << t.file << ": " << name << ": " << bytes.error().message();
        content = std::move(*bytes);
      }
      dir.Write(name, content);
      if (name != entry) file_args.push_back(name);
    }
  }
  if (spec.contains("stdin")) {
    dir.Write(".stdin", toml::find<std::string>(spec, "stdin"));
    args.push_back("--input-file");
    args.push_back(".stdin");
  }
  if (spec.contains("args")) {
    for (const auto& a : toml::find<std::vector<std::string>>(spec, "args")) {
      args.push_back("--arg");
      args.push_back(a);
    }
  }
  if (spec.contains("env")) {
    for (const auto& [k, v] : toml::find<toml::table>(spec, "env")) {
      args.push_back("--env");
      args.push_back(k + "=" + v.as_string().str);
    }
  }
  args.insert(args.end(), file_args.begin(), file_args.end());

  ProcessResult p = RunPolyrun(args, dir.path());
  const toml::value& expect = toml::find(spec, "expect");
  if (check) {
    ExpectCheck(p, expect);
    return;
  }
  ASSERT_EQ(p.exit_code, 0) << p.err << p.out;
  json r = json::parse(p.out);
  const std::string context = r.dump(2);

  EXPECT_EQ(r["status"], toml::find<std::string>(expect, "status")) << context;
  if (expect.contains("exit_code")) {
    EXPECT_EQ(r["exit_code"], toml::find<int>(expect, "exit_code")) << context;
  }
  if (expect.contains("signal")) {
    EXPECT_EQ(r["signal"], toml::find<int>(expect, "signal")) << context;
  }
  if (expect.contains("stdout")) {
    EXPECT_EQ(r["stdout"], toml::find<std::string>(expect, "stdout")) << context;
  }
  if (expect.contains("error_type")) {
    EXPECT_EQ(r["error"]["type"], toml::find<std::string>(expect, "error_type")) << context;
  }
  if (expect.contains("error_name")) {
    EXPECT_EQ(r["error"]["name"], toml::find<std::string>(expect, "error_name")) << context;
  }
  if (expect.contains("error_message")) {
    EXPECT_EQ(r["error"]["message"], toml::find<std::string>(expect, "error_message")) << context;
  }
  if (expect.contains("error_file")) {
    EXPECT_EQ(r["error"]["file"], toml::find<std::string>(expect, "error_file")) << context;
  }
  if (expect.contains("error_line")) {
    EXPECT_EQ(r["error"]["line"], toml::find<int>(expect, "error_line")) << context;
  }
  if (expect.contains("error_column")) {
    EXPECT_EQ(r["error"]["column"], toml::find<int>(expect, "error_column")) << context;
  }
  if (expect.contains("traceback_lines")) {
    std::vector<int> lines;
    for (const auto& f : r["error"]["traceback"]) lines.push_back(f["line"]);
    EXPECT_EQ(lines, toml::find<std::vector<int>>(expect, "traceback_lines")) << context;
  }
  if (expect.contains("compile_line")) {
    ASSERT_TRUE(r["compile"].is_object()) << context;
    ASSERT_FALSE(r["compile"]["diagnostics"].empty()) << context;
    const json& first = r["compile"]["diagnostics"][0];
    EXPECT_EQ(first["line"], toml::find<int>(expect, "compile_line")) << context;
    EXPECT_EQ(r["error"]["line"], toml::find<int>(expect, "compile_line")) << context;
    if (expect.contains("compile_column")) {
      EXPECT_EQ(first["column"], toml::find<int>(expect, "compile_column")) << context;
    }
    if (expect.contains("compile_diagnostics_min")) {
      EXPECT_GE(r["compile"]["diagnostics"].size(),
                toml::find<size_t>(expect, "compile_diagnostics_min"))
          << context;
    }
    EXPECT_FALSE(r["compile"]["stderr"].get<std::string>().empty()) << context;
  }
}

INSTANTIATE_TEST_SUITE_P(Languages, LanguageSelfTest, ::testing::ValuesIn(Discover()),
                         [](const ::testing::TestParamInfo<SelfTest>& param_info) {
                           return param_info.param.language + "_" + param_info.param.name;
                         });

}  // namespace
}  // namespace polyrun::testing
