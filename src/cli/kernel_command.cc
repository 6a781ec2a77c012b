#include "cli/kernel_command.h"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>

#include "cli/exit_codes.h"
#include "jupyter/kernelspec.h"
#include "languages/limits.h"
#include "languages/registry.h"

namespace polyrun::cli {

namespace {

int Fatal(const std::string& command, const std::string& what, int code = kExitUsage) {
  std::cerr << "polyrun kernel " << command << ": " << what << "\n";
  return code;
}

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// The kernel's own program (kernel_main.cc), built beside polyrun.
constexpr const char* kKernelProgram = "polyrun-kernel";

std::string SelfPath() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

// Jupyter's data directories, as jupyter_core computes them on Linux.
std::string KernelsDir(const KernelInstallOptions& o) {
  if (o.user) {
    std::string data = Env("XDG_DATA_HOME");
    if (data.empty()) data = Env("HOME") + "/.local/share";
    return data + "/jupyter/kernels";
  }
  return (o.prefix.empty() ? std::string("/usr/local") : o.prefix) + "/share/jupyter/kernels";
}

}  // namespace

int KernelInstallCommand(const KernelInstallOptions& options, const SettingsFlags& settings) {
  if (options.user && !options.prefix.empty()) {
    return Fatal("install", "--user and --prefix exclude each other");
  }
  auto config = LoadSettings(settings);
  if (!config) return Fatal("install", config.error().message());
  auto registry = languages::Registry::Load(config->languages_dir);
  if (!registry) return Fatal("install", registry.error().message());
  registry->ProbeVersions(config->cache_dir);

  jupyter::KernelSpecInput input;
  input.polyrun_path = SelfPath();
  if (input.polyrun_path.empty()) return Fatal("install", "cannot find this polyrun's path");
  // The kernel finds the languages the way this command did, unless a flag or the
  // environment (which Jupyter may not pass on) chose them: then the kernelspec names them.
  if (!settings.languages_dir.empty() || !Env("POLYRUN_LANGUAGES").empty()) {
    input.languages_dir = std::filesystem::absolute(config->languages_dir).lexically_normal();
  }
  languages::LimitSet check;
  for (const auto& [name, text] : options.limits) {
    if (auto ok = check.Set(name, text); !ok) return Fatal("install", ok.error().message());
    for (const auto& d : languages::LimitDecls()) {
      if (d.name == name) input.limit_flags.emplace_back(std::string(d.flag), text);
    }
  }

  std::vector<const languages::LanguageEntry*> chosen;
  if (options.languages.empty()) {
    for (const auto& e : registry->entries()) {
      if (e.usable && e.language && e.language->session) chosen.push_back(&e);
    }
    if (chosen.empty()) {
      return Fatal("install", "no usable language with sessions here (see polyrun languages)");
    }
  } else {
    for (const auto& name : options.languages) {
      const languages::LanguageEntry* e = registry->Find(name);
      if (e == nullptr || !e->language) return Fatal("install", name + ": unknown language");
      if (!e->language->session) {
        return Fatal("install", name + ": " + e->language->id + " has no session driver");
      }
      if (!e->usable) return Fatal("install", name + ": not usable here: " + e->problem);
      chosen.push_back(e);
    }
  }
  const std::string kernels_dir = KernelsDir(options);
  for (const auto* e : chosen) {
    auto dir = jupyter::WriteKernelSpec(kernels_dir, *e->language, input);
    if (!dir) return Fatal("install", dir.error().message(), kExitInternal);
    std::cout << "polyrun kernel install: " << jupyter::KernelName(*e->language) << " ("
              << e->language->name << ") -> " << *dir << "/kernel.json\n";
  }
  std::cout << std::flush;
  return 0;
}

std::vector<std::string> KernelProcessArgs(const KernelRunOptions& options,
                                           const SettingsFlags& settings) {
  std::vector<std::string> args;
  for (const auto& [flag, value] : {std::pair{"--config", &settings.config_file},
                                    std::pair{"--languages-dir", &settings.languages_dir},
                                    std::pair{"--cache-dir", &settings.cache_dir}}) {
    if (!value->empty()) args.insert(args.end(), {flag, *value});
  }
  args.insert(args.end(), {"--language", options.language, "-f", options.connection_file});
  for (const auto& [name, text] : options.limits) {
    for (const auto& d : languages::LimitDecls()) {
      if (d.name == name) args.insert(args.end(), {"--" + std::string(d.flag), text});
    }
  }
  return args;
}

int KernelRunCommand(const KernelRunOptions& options, const SettingsFlags& settings) {
  const std::string self = SelfPath();
  if (self.empty()) return Fatal("run", "cannot find this polyrun's path", kExitInternal);
  std::vector<std::string> args = {self.substr(0, self.rfind('/') + 1) + kKernelProgram};
  for (auto& a : KernelProcessArgs(options, settings)) args.push_back(std::move(a));
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  ::execv(argv[0], argv.data());
  return Fatal("run", "execv " + args[0] + ": " + std::strerror(errno), kExitInternal);
}

}  // namespace polyrun::cli
