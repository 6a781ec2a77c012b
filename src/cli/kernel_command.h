#pragma once

#include <map>
#include <string>
#include <vector>

#include "cli/settings.h"

namespace polyrun::cli {

struct KernelInstallOptions {
  bool user = false;   // ~/.local/share/jupyter/kernels ($XDG_DATA_HOME/jupyter/kernels)
  std::string prefix;  // <prefix>/share/jupyter/kernels; empty: /usr/local
  std::vector<std::string> languages;         // empty: every usable one with sessions
  std::map<std::string, std::string> limits;  // limit name -> text, from the flags
};

struct KernelRunOptions {
  std::string language;
  std::string connection_file;
  std::map<std::string, std::string> limits;  // limit name -> text, from the flags
};

// `polyrun kernel install`: writes a kernelspec per language (docs/jupyter.md) and prints
// where. Returns the process exit code.
int KernelInstallCommand(const KernelInstallOptions& options, const SettingsFlags& settings);

// `polyrun kernel run`, which Jupyter starts from a kernelspec's argv: replaces this process
// (same pid) with polyrun-kernel, the program beside this one that serves the kernel until
// Jupyter shuts it down. Returns an exit code only when that program cannot be executed.
int KernelRunCommand(const KernelRunOptions& options, const SettingsFlags& settings);

// polyrun-kernel's arguments (after argv[0]) for `options` and `settings`: --config,
// --languages-dir and --cache-dir when set, --language, -f, then one --FLAG VALUE per limit.
std::vector<std::string> KernelProcessArgs(const KernelRunOptions& options,
                                           const SettingsFlags& settings);

}  // namespace polyrun::cli
