#include "jupyter/kernelspec.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace polyrun::jupyter {
namespace {

using nlohmann::json;

languages::Language Lang(const std::string& id, const std::string& name, const std::string& ext) {
  languages::Language l;
  l.id = id;
  l.name = name;
  l.extensions = {ext};
  return l;
}

KernelSpecInput At(const std::string& polyrun_path) {
  KernelSpecInput in;
  in.polyrun_path = polyrun_path;
  return in;
}

TEST(KernelSpec, ArgvRunsThisPolyrunWithTheLanguageAndConnectionFile) {
  json spec = KernelSpecJson(Lang("python", "Python", "py"), At("/opt/bin/polyrun"));
  EXPECT_EQ(spec["argv"], json::array({"/opt/bin/polyrun", "kernel", "run", "--language", "python",
                                       "-f", "{connection_file}"}));
  EXPECT_EQ(spec["display_name"], "Python (polyrun sandbox)");
  EXPECT_EQ(spec["language"], "python");
  EXPECT_EQ(spec["interrupt_mode"], "signal");
}

TEST(KernelSpec, LanguagesDirIsAGlobalFlagAndLimitsFollowTheCommand) {
  json spec = KernelSpecJson(Lang("ruby", "Ruby", "rb"),
                             {.polyrun_path = "/p/polyrun",
                              .languages_dir = "/src/languages",
                              .limit_flags = {{"memory", "512M"}, {"wall-time", "30s"}}});
  EXPECT_EQ(spec["argv"], json::array({"/p/polyrun", "--languages-dir", "/src/languages", "kernel",
                                       "run", "--language", "ruby", "-f", "{connection_file}",
                                       "--memory", "512M", "--wall-time", "30s"}));
}

TEST(KernelSpec, JupyterLanguageNamesFollowTheReferenceKernels) {
  EXPECT_EQ(KernelSpecJson(Lang("r", "R", "r"), At("/p"))["language"], "R");
  json py = LanguageInfoFor(Lang("python", "Python", "py"), "3.11.2");
  EXPECT_EQ(py, (json{{"name", "python"},
                      {"version", "3.11.2"},
                      {"mimetype", "text/x-python"},
                      {"file_extension", ".py"},
                      {"codemirror_mode", {{"name", "ipython"}, {"version", 3}}},
                      {"pygments_lexer", "ipython3"}}));
  json bash = LanguageInfoFor(Lang("bash", "Bash", "sh"), "5.2");
  EXPECT_EQ(bash["codemirror_mode"], "shell");
  EXPECT_EQ(bash["file_extension"], ".sh");
}

TEST(KernelSpec, UnknownLanguagesFallBackToTheirIdAndFirstExtension) {
  json info = LanguageInfoFor(Lang("scheme", "Scheme", "scm"), "3.0.8");
  EXPECT_EQ(info["name"], "scheme");
  EXPECT_EQ(info["file_extension"], ".scm");
  EXPECT_EQ(info["pygments_lexer"], "scheme");
  EXPECT_EQ(KernelName(Lang("scheme", "Scheme", "scm")), "polyrun-scheme");
}

TEST(KernelSpec, WriteCreatesTheKernelFolderWithKernelJson) {
  char tmpl[] = "/tmp/polyrun-kernelspec-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string root = tmpl;
  auto dir =
      WriteKernelSpec(root + "/share/jupyter/kernels", Lang("lua", "Lua", "lua"), At("/p/polyrun"));
  ASSERT_TRUE(dir) << dir.error().message();
  EXPECT_EQ(*dir, root + "/share/jupyter/kernels/polyrun-lua");
  std::ifstream in(*dir + "/kernel.json");
  std::stringstream text;
  text << in.rdbuf();
  json written = json::parse(text.str());
  EXPECT_EQ(written, KernelSpecJson(Lang("lua", "Lua", "lua"), At("/p/polyrun")));
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace polyrun::jupyter
