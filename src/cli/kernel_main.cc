// polyrun-kernel: serves one Jupyter kernel (docs/jupyter.md) until Jupyter shuts it down.
// `polyrun kernel run` executes it with the arguments KernelProcessArgs gives. It is a program of
// its own so that xeus, and the libzmq and OpenSSL it brings (~2.7 ms to load), are loaded by a
// kernel's process only, not at every polyrun start. Parses and wires; nothing else.
#include <CLI/CLI.hpp>
#include <iostream>

#include "cli/exit_codes.h"
#include "cli/kernel_command.h"
#include "engine/engine.h"
#include "jupyter/kernel.h"
#include "languages/limits.h"

namespace {

using namespace polyrun;

int Fail(const std::string& what, int code) {
  std::cerr << "polyrun kernel run: " << what << "\n";
  return code;
}

int Serve(const cli::KernelRunOptions& options, const cli::SettingsFlags& settings) {
  jupyter::KernelOptions ko;
  ko.language = options.language;
  ko.connection_file = options.connection_file;
  for (const auto& [name, text] : options.limits) {
    if (auto ok = ko.limits.Set(name, text); !ok)
      return Fail(ok.error().message(), cli::kExitUsage);
  }
  auto config = cli::LoadSettings(settings);
  if (!config) return Fail(config.error().message(), cli::kExitUsage);
  // One session's sandbox: no network namespaces made ahead for runs that will not come.
  auto engine = engine::Engine::Create(
      *config, {.check_patterns = false, .only_language = options.language, .netns_ready = 0});
  if (!engine) return Fail(engine.error().message(), cli::kExitInternal);
  auto served = jupyter::RunKernel(**engine, ko);
  if (!served) return Fail(served.error().message(), cli::kExitInternal);
  return 0;
}

int Main(int argc, char** argv) {
  // Before any thread exists (see jupyter::BlockInterruptsForKernel).
  jupyter::BlockInterruptsForKernel();
  cli::KernelRunOptions options;
  cli::SettingsFlags settings;
  CLI::App app{"polyrun-kernel: one Jupyter kernel; `polyrun kernel run` starts it"};
  app.add_option("--config", settings.config_file, "Config file (TOML)");
  app.add_option("--languages-dir", settings.languages_dir, "Directory of language folders");
  app.add_option("--cache-dir", settings.cache_dir, "Cache directory");
  app.add_option("--language", options.language, "Language id")->required();
  app.add_option("-f", options.connection_file, "Jupyter connection file")->required();
  std::vector<std::string> limit_values(languages::kLimitCount);
  for (size_t i = 0; i < languages::kLimitCount; ++i) {
    app.add_option("--" + std::string(languages::LimitDecls()[i].flag), limit_values[i]);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  for (size_t i = 0; i < languages::kLimitCount; ++i) {
    if (!limit_values[i].empty())
      options.limits[std::string(languages::LimitDecls()[i].name)] = limit_values[i];
  }
  return Serve(options, settings);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Main(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "polyrun kernel run: internal error: " << e.what() << "\n";
    return 70;
  }
}
