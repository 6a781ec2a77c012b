#include "jupyter/kernelspec.h"

#include <filesystem>
#include <map>
#include <system_error>

#include "util/files.h"

namespace polyrun::jupyter {

using nlohmann::json;

namespace {

// The fields Jupyter's front ends use to highlight and save a language's cells.
struct JupyterNames {
  std::string name, mimetype, file_extension;
  json codemirror_mode;
  std::string pygments_lexer;
};

// The names used by each language's reference kernel (ipykernel, IJavascript, IRuby, IRkernel,
// bash_kernel, …), so notebooks written with them open with the same highlighting.
const std::map<std::string, JupyterNames>& KnownNames() {
  static const std::map<std::string, JupyterNames> names = {
      {"python",
       {"python", "text/x-python", ".py", {{"name", "ipython"}, {"version", 3}}, "ipython3"}},
      {"javascript", {"javascript", "application/javascript", ".js", "javascript", "javascript"}},
      {"typescript", {"typescript", "text/typescript", ".ts", "typescript", "typescript"}},
      {"ruby", {"ruby", "application/x-ruby", ".rb", "ruby", "ruby"}},
      {"lua", {"lua", "text/x-lua", ".lua", "lua", "lua"}},
      {"r", {"R", "text/x-r-source", ".r", "r", "r"}},
      {"bash", {"bash", "text/x-sh", ".sh", "shell", "bash"}},
  };
  return names;
}

JupyterNames NamesFor(const languages::Language& lang) {
  if (auto it = KnownNames().find(lang.id); it != KnownNames().end()) return it->second;
  std::string ext = lang.extensions.empty() ? "" : "." + lang.extensions.front();
  return {lang.id, "text/plain", ext, lang.id, lang.id};
}

}  // namespace

json LanguageInfoFor(const languages::Language& lang, const std::string& version) {
  JupyterNames n = NamesFor(lang);
  return {{"name", n.name},
          {"version", version},
          {"mimetype", n.mimetype},
          {"file_extension", n.file_extension},
          {"codemirror_mode", n.codemirror_mode},
          {"pygments_lexer", n.pygments_lexer}};
}

std::string KernelName(const languages::Language& lang) {
  return "polyrun-" + lang.id;
}

json KernelSpecJson(const languages::Language& lang, const KernelSpecInput& input) {
  json argv = json::array({input.polyrun_path});
  // --languages-dir is a global flag: it goes before the subcommand.
  if (!input.languages_dir.empty()) {
    argv.push_back("--languages-dir");
    argv.push_back(input.languages_dir);
  }
  for (const char* a : {"kernel", "run", "--language"}) argv.push_back(a);
  argv.push_back(lang.id);
  argv.push_back("-f");
  argv.push_back("{connection_file}");
  for (const auto& [flag, value] : input.limit_flags) {
    argv.push_back("--" + flag);
    argv.push_back(value);
  }
  return {{"argv", argv},
          {"display_name", lang.name + " (polyrun sandbox)"},
          {"language", NamesFor(lang).name},
          {"interrupt_mode", "signal"},
          {"metadata", {{"polyrun", {{"language", lang.id}}}}}};
}

Result<std::string> WriteKernelSpec(const std::string& kernels_dir, const languages::Language& lang,
                                    const KernelSpecInput& input) {
  std::string dir = kernels_dir + "/" + KernelName(lang);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Fail(Errc::kSyscall, "cannot create " + dir + ": " + ec.message());
  auto written = WriteFileAtomic(dir + "/kernel.json", KernelSpecJson(lang, input).dump(1) + "\n");
  if (!written) return std::unexpected(written.error());
  return dir;
}

}  // namespace polyrun::jupyter
