#include "languages/analyzer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace polyrun::languages {
namespace {

namespace fs = std::filesystem;

TEST(Analyzer, ShebangNamesTheInterpreter) {
  EXPECT_EQ(ShebangInterpreter("#!/usr/bin/python3\nprint(1)"), "python3");
  EXPECT_EQ(ShebangInterpreter("#!/usr/bin/env node\n"), "node");
  EXPECT_EQ(ShebangInterpreter("#! /usr/bin/env -S ruby --disable-gems\n"), "ruby");
  EXPECT_EQ(ShebangInterpreter("#!/bin/bash"), "bash");
  EXPECT_EQ(ShebangInterpreter("print(1)\n#!/bin/sh"), "");
  EXPECT_EQ(ShebangInterpreter("#!\n"), "");
}

TEST(Analyzer, ReadsTheCheckProtocol) {
  FileCheck f;
  size_t n = ParseCheckOutput(
      "noise\n"
      "syntax_error\tmain.py\t3\t7\tinvalid syntax\n"
      "import\tos\t1\t1\n"
      "import\tnumpy\t2\t0\n"
      "import\tos\t5\t1\n"
      "import\tbroken\n"
      "syntax_error\tmain.py\tx\t\tno numbers\n",
      f);
  EXPECT_EQ(n, 5u);
  ASSERT_EQ(f.syntax_errors.size(), 2u);
  EXPECT_EQ(f.syntax_errors[0].file, "main.py");
  EXPECT_EQ(f.syntax_errors[0].line, 3);
  EXPECT_EQ(f.syntax_errors[0].column, 7);
  EXPECT_EQ(f.syntax_errors[0].message, "invalid syntax");
  EXPECT_EQ(f.syntax_errors[1].line, 0);
  ASSERT_EQ(f.imports.size(), 2u);  // sorted, unique, first line kept
  EXPECT_EQ(f.imports[0].name, "numpy");
  EXPECT_FALSE(f.imports[0].available);
  EXPECT_EQ(f.imports[1].name, "os");
  EXPECT_EQ(f.imports[1].line, 1);
  EXPECT_TRUE(f.imports[1].available);
}

class DetectTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("polyrun-detect-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    Write("snake", "snk", R"(["snake3"])", R"(['^\s*def \w+\(', '^\s*import \w+'])");
    Write("gem", "gm", R"(["gem-ruby"])", R"(['^\s*def \w+\s*$', '^\s*end\s*$'])");
    auto reg = Registry::Load(dir_.string());
    ASSERT_TRUE(reg) << reg.error().message();
    reg_ = std::move(*reg);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void Write(const std::string& id, const std::string& ext, const std::string& aliases,
             const std::string& patterns) {
    fs::create_directories(dir_ / id);
    std::ofstream(dir_ / id / "manifest.toml")
        << "id = \"" << id << "\"\nextensions = [\"" << ext << "\"]\naliases = " << aliases
        << "\n[version]\ncommand = [\"/bin/true\"]\npattern = '(?P<version>x)'\n"
        << "[run]\ncommand = [\"/bin/true\"]\n[detect]\npatterns = " << patterns << "\n";
  }
  fs::path dir_;
  Registry reg_;
};

TEST_F(DetectTest, ExtensionThenShebangThenContent) {
  auto d = DetectLanguage(reg_, "dir/x.snk", "def f():\n  end\n");
  ASSERT_NE(d.entry, nullptr);
  EXPECT_EQ(d.entry->id, "snake");
  EXPECT_EQ(d.how, "extension");

  d = DetectLanguage(reg_, "script", "#!/usr/bin/env snake3.11\nwhatever\n");
  ASSERT_NE(d.entry, nullptr);
  EXPECT_EQ(d.entry->id, "snake");
  EXPECT_EQ(d.how, "shebang");

  d = DetectLanguage(reg_, "script", "import os\ndef main(x):\n  pass\n");
  ASSERT_NE(d.entry, nullptr);
  EXPECT_EQ(d.entry->id, "snake");
  EXPECT_EQ(d.how, "content");

  d = DetectLanguage(reg_, "script", "def greet\n  puts 1\nend\n");
  ASSERT_NE(d.entry, nullptr);
  EXPECT_EQ(d.entry->id, "gem");
}

TEST_F(DetectTest, NoEvidenceOrATieIsNoAnswer) {
  EXPECT_EQ(DetectLanguage(reg_, "notes.txt", "hello there\n").entry, nullptr);
  // One pattern of each language: a tie.
  EXPECT_EQ(DetectLanguage(reg_, "x", "import os\nend\n").entry, nullptr);
  EXPECT_EQ(DetectLanguage(reg_, "x", "#!/usr/bin/env perl6\n").entry, nullptr);
}

}  // namespace
}  // namespace polyrun::languages
