// polyrun's command line: parses flags and hands them to the commands. Nothing else.
#include <CLI/CLI.hpp>
#include <iostream>

#include "cli/check_command.h"
#include "cli/exit_codes.h"
#include "cli/info_commands.h"
#include "cli/kernel_command.h"
#include "cli/run_command.h"
#include "cli/serve_command.h"
#include "cli/session_command.h"
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

  cli::SessionOptions session;
  auto* session_cmd = app.add_subcommand(
      "session", "Live sessions on a polyrun server (`polyrun serve`): state kept between runs");
  session_cmd->require_subcommand(1);
  session_cmd
      ->add_option("--server", session.server,
                   "Server URL, http:// only (default http://127.0.0.1:8080)")
      ->envname("POLYRUN_SERVER");
  session_cmd->add_option("--api-key", session.api_key, "API key for the server")
      ->envname("POLYRUN_API_KEY");
  std::string session_code;
  std::string session_input;
  std::vector<std::string> session_limit_values(languages::kLimitCount);
  // Limit flags for a session subcommand: (option, limit index) pairs. `per_execution` keeps
  // only the limits an execution may lower on its own (wall_time, cpu_time, output).
  auto add_session_limits = [&](CLI::App* cmd, bool per_execution) {
    std::vector<std::pair<CLI::Option*, size_t>> opts;
    for (size_t i = 0; i < languages::kLimitCount; ++i) {
      const auto& d = languages::LimitDecls()[i];
      if (per_execution && d.name != "wall_time" && d.name != "cpu_time" && d.name != "output")
        continue;
      opts.emplace_back(
          cmd->add_option("--" + std::string(d.flag), session_limit_values[i],
                          std::string(d.help) + " (" + std::string(OptionTypeName(d.type)) + ")"),
          i);
    }
    return opts;
  };
  auto* session_create = session_cmd->add_subcommand("create", "Start a session; prints its id");
  session_create->add_option("files", session.files, "Files copied into the session's /work");
  session_create->add_option("-l,--language", session.language,
                             "Language id or alias (default: from the first file's extension)");
  session_create->add_option("--label", session.labels, "KEY=VALUE label (repeatable)")
      ->allow_extra_args(false);
  session_create->add_option("--env", session.env, "KEY=VALUE for the environment (repeatable)")
      ->allow_extra_args(false);
  session_create->add_option("--lifetime", session.lifetime,
                             "How long the session may live (duration; server default 1h)");
  session_create->add_option("--idle-timeout", session.idle_timeout,
                             "Close it after this long idle (duration; server default 15m)");
  session_create->add_option("--exclusive", session.exclusive,
                             "Label name: refuse if a live session holds the same value of it");
  session_create->add_flag("--json", session.json, "Print the session object");
  auto create_limits = add_session_limits(session_create, false);
  auto* session_exec = session_cmd->add_subcommand(
      "exec", "Run code in a session; prints its output and the value of its last expression");
  session_exec->add_option("id", session.id, "Session id")->required();
  session_exec->add_option("file", session.code_file, "File holding the code, or - for stdin");
  auto* session_code_opt = session_exec->add_option("-c,--code", session_code, "Code to run");
  auto* session_input_opt = session_exec->add_option(
      "--input", session_input, "Answers to the code's input requests, one line each");
  session_exec->add_option("--label", session.labels, "KEY=VALUE label (repeatable)")
      ->allow_extra_args(false);
  session_exec->add_flag("--json", session.json, "Print the whole result as JSON");
  auto exec_limits = add_session_limits(session_exec, true);
  std::vector<std::pair<CLI::App*, cli::SessionOptions::Action>> session_actions = {
      {session_create, cli::SessionOptions::Action::kCreate},
      {session_exec, cli::SessionOptions::Action::kExec}};
  for (auto [name, action, help] :
       {std::tuple{"interrupt", cli::SessionOptions::Action::kInterrupt,
                   "Interrupt the running execution (the session keeps its state)"},
        std::tuple{"restart", cli::SessionOptions::Action::kRestart,
                   "Replace the session's interpreter with a fresh one (state lost)"},
        std::tuple{"close", cli::SessionOptions::Action::kClose, "End the session"}}) {
    auto* cmd = session_cmd->add_subcommand(name, help);
    cmd->add_option("id", session.id, "Session id")->required();
    cmd->add_flag("--json", session.json, "Print the server's reply");
    session_actions.emplace_back(cmd, action);
  }
  auto* session_list = session_cmd->add_subcommand("list", "The server's live sessions");
  session_list->add_flag("--json", session.json, "JSON output");
  session_actions.emplace_back(session_list, cli::SessionOptions::Action::kList);
  // --server and --api-key may also follow the action (`polyrun session list --server URL`).
  for (auto& entry : session_actions) entry.first->fallthrough();

  bool json = false;
  auto* langs_cmd =
      app.add_subcommand("languages", "List languages and whether they are usable here");
  langs_cmd->add_flag("--json", json, "JSON output");
  auto* doctor_cmd = app.add_subcommand("doctor", "Check what the sandbox needs from this host");
  doctor_cmd->add_flag("--json", json, "JSON output");
  bool markdown = false;
  cli::KernelInstallOptions kernel_install;
  cli::KernelRunOptions kernel_run;
  auto* kernel_cmd = app.add_subcommand("kernel", "Jupyter kernels on sessions (docs/jupyter.md)");
  kernel_cmd->require_subcommand(1);
  auto* kernel_install_cmd = kernel_cmd->add_subcommand(
      "install", "Write kernelspecs: polyrun-<id> per language (default: all with sessions)");
  kernel_install_cmd->add_option("languages", kernel_install.languages, "Language ids");
  auto* kernel_user_opt = kernel_install_cmd->add_flag("--user", kernel_install.user,
                                                       "Into ~/.local/share/jupyter/kernels");
  kernel_install_cmd
      ->add_option("--prefix", kernel_install.prefix,
                   "Into PREFIX/share/jupyter/kernels (default /usr/local)")
      ->excludes(kernel_user_opt);
  auto* kernel_run_cmd =
      kernel_cmd->add_subcommand("run", "Serve one kernel (Jupyter starts this from kernel.json)");
  kernel_run_cmd->add_option("-l,--language", kernel_run.language, "Language id")->required();
  kernel_run_cmd->add_option("-f", kernel_run.connection_file, "Jupyter connection file")
      ->required();
  std::vector<std::string> kernel_limit_values(languages::kLimitCount);
  for (size_t i = 0; i < languages::kLimitCount; ++i) {
    const auto& d = languages::LimitDecls()[i];
    const std::string help = std::string(d.help) + " (" + std::string(OptionTypeName(d.type)) + ")";
    // install records them in kernel.json's argv; run applies them to the session.
    kernel_install_cmd->add_option("--" + std::string(d.flag), kernel_limit_values[i], help);
    kernel_run_cmd->add_option("--" + std::string(d.flag), kernel_limit_values[i], help);
  }

  auto* options_cmd = app.add_subcommand("options", "Reference of every option (Markdown)");
  options_cmd->add_flag("--markdown", markdown, "Markdown output (the default)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    std::string help = "polyrun ";
    if (run_cmd->parsed()) help += "run ";
    if (session_cmd->parsed()) {
      help += "session ";
      for (const auto& [cmd, action] : session_actions) {
        if (cmd->parsed()) help += cmd->get_name() + " ";
      }
    }
    std::cerr << "polyrun: " << e.what() << " (see " << help << "--help)\n";
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
  if (*session_cmd) {
    for (const auto& [cmd, action] : session_actions) {
      if (*cmd) session.action = action;
    }
    if (*session_code_opt) session.code = session_code;
    if (*session_input_opt) session.input = session_input;
    for (const auto& [opt, i] : *session_create ? create_limits : exec_limits) {
      if (*opt)
        session.limits[std::string(languages::LimitDecls()[i].name)] = session_limit_values[i];
    }
    return cli::SessionCommand(session);
  }
  if (*kernel_cmd) {
    std::map<std::string, std::string> limits;
    for (size_t i = 0; i < languages::kLimitCount; ++i) {
      if (!kernel_limit_values[i].empty())
        limits[std::string(languages::LimitDecls()[i].name)] = kernel_limit_values[i];
    }
    if (*kernel_install_cmd) {
      kernel_install.limits = std::move(limits);
      return cli::KernelInstallCommand(kernel_install, settings);
    }
    kernel_run.limits = std::move(limits);
    return cli::KernelRunCommand(kernel_run, settings);
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
