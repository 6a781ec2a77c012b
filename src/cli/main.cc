// polyrun's command line: parses flags and hands them to the commands. Nothing else.
#include <CLI/CLI.hpp>
#include <iostream>

#include "cli/check_command.h"
#include "cli/exit_codes.h"
#include "cli/info_commands.h"
#include "cli/run_command.h"
#include "cli/serve_command.h"
#include "languages/limits.h"
#include "server/server_config.h"

namespace {

int Main(int argc, char** argv) {
  using namespace polyrun;
  CLI::App app{"polyrun: run untrusted code in many languages, safely and fast"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("polyrun ") + POLYRUN_VERSION);
  cli::SettingsFlags settings;
  app.add_option("--config", settings.config_file, "Config file (TOML)");
  app.add_option("--languages-dir", settings.languages_dir, "Directory of language folders");
  app.add_option("--cache-dir", settings.cache_dir, "Cache directory");

  cli::RunOptions run;
  std::string code;
  std::string input;
  auto* run_cmd = app.add_subcommand("run", "Run a program in the sandbox");
  run_cmd->add_option("files", run.files,
                      "Source files (the first is the entry point), or - for stdin");
  run_cmd->add_option("-l,--language", run.language, "Language id, alias or extension");
  auto* code_opt = run_cmd->add_option("-c,--code", code, "Code to run");
  auto* input_opt = run_cmd->add_option("--input", input, "Text for the program's stdin");
  run_cmd->add_option("--input-file", run.input_file, "File for the program's stdin");
  run_cmd->add_option("--arg", run.args, "Argument for the program (repeatable)")
      ->allow_extra_args(false);
  run_cmd->add_option("--env", run.env, "KEY=VALUE for the program's environment (repeatable)")
      ->allow_extra_args(false);
  run_cmd->add_flag("--json", run.json,
                    "Print the whole result as JSON; exit 0 when polyrun worked");
  std::vector<std::string> limit_values(languages::kLimitCount);
  std::vector<CLI::Option*> limit_opts;
  for (size_t i = 0; i < languages::kLimitCount; ++i) {
    const auto& d = languages::LimitDecls()[i];
    limit_opts.push_back(
        run_cmd->add_option("--" + std::string(d.flag), limit_values[i],
                            std::string(d.help) + " (" + std::string(OptionTypeName(d.type)) +
                                ", default " + std::string(d.default_value) + ")"));
  }

  cli::CheckOptions check;
  std::string check_code;
  auto* check_cmd = app.add_subcommand(
      "check", "Analyze files without running them: language, syntax errors, imports");
  check_cmd->add_option("files", check.files, "Files to check (each may import the others)");
  check_cmd->add_option("-l,--language", check.language,
                        "Language id, alias or extension (default: detected per file)");
  auto* check_code_opt = check_cmd->add_option("-c,--code", check_code, "Code to check");
  check_cmd->add_flag("--json", check.json, "JSON output");

  cli::ServeOptions serve;
  auto* serve_cmd = app.add_subcommand(
      "serve", "Serve the HTTP/JSON + WebSocket API (docs/api.md) until SIGINT/SIGTERM");
  std::vector<std::string> serve_values(server::ServerSettingDecls().size());
  std::vector<CLI::Option*> serve_opts;
  for (size_t i = 0; i < serve_values.size(); ++i) {
    const auto& d = server::ServerSettingDecls()[i];
    if (d.flag.empty()) {
      serve_opts.push_back(nullptr);
      continue;
    }
    serve_opts.push_back(serve_cmd->add_option(
        "--" + std::string(d.flag), serve_values[i],
        std::string(d.help) + " (" + std::string(OptionTypeName(d.type)) +
            (d.default_value.empty() ? "" : ", default " + std::string(d.default_value)) + ")"));
  }

  bool json = false;
  auto* langs_cmd =
      app.add_subcommand("languages", "List languages and whether they are usable here");
  langs_cmd->add_flag("--json", json, "JSON output");
  auto* doctor_cmd = app.add_subcommand("doctor", "Check what the sandbox needs from this host");
  doctor_cmd->add_flag("--json", json, "JSON output");
  bool markdown = false;
  auto* options_cmd = app.add_subcommand("options", "Reference of every option (Markdown)");
  options_cmd->add_flag("--markdown", markdown, "Markdown output (the default)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    std::cerr << "polyrun: " << e.what() << " (see polyrun " << (run_cmd->parsed() ? "run " : "")
              << "--help)\n";
    return cli::kExitUsage;
  }
  if (*run_cmd) {
    if (*code_opt) run.code = code;
    if (*input_opt) run.input = input;
    for (size_t i = 0; i < languages::kLimitCount; ++i) {
      if (*limit_opts[i])
        run.limits[std::string(languages::LimitDecls()[i].name)] = limit_values[i];
    }
    return cli::RunCommand(run, settings);
  }
  if (*check_cmd) {
    if (*check_code_opt) check.code = check_code;
    return cli::CheckCommand(check, settings);
  }
  if (*serve_cmd) {
    for (size_t i = 0; i < serve_values.size(); ++i) {
      if (serve_opts[i] != nullptr && *serve_opts[i])
        serve.settings[std::string(server::ServerSettingDecls()[i].name)] = serve_values[i];
    }
    return cli::ServeCommand(serve, settings);
  }
  if (*langs_cmd) return cli::LanguagesCommand(settings, json);
  if (*doctor_cmd) return cli::DoctorCommand(settings, json);
  if (*options_cmd) return cli::OptionsCommand();
  return cli::kExitUsage;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Main(argc, argv);
  } catch (const std::exception& e) {
    // A broken invariant: say so plainly rather than let the runtime abort.
    std::cerr << "polyrun: internal error: " << e.what() << "\n";
    return 70;
  }
}
