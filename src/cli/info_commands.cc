#include "cli/info_commands.h"

#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/exit_codes.h"
#include "engine/config.h"
#include "engine/engine.h"
#include "engine/language_info.h"
#include "languages/registry.h"
#include "sandbox/cgroup.h"
#include "sandbox/host_check.h"
#include "server/server_config.h"

namespace polyrun::cli {

using nlohmann::json;

int LanguagesCommand(const SettingsFlags& settings, bool as_json) {
  auto config = LoadSettings(settings);
  if (!config) {
    std::cerr << "polyrun: " << config.error().message() << "\n";
    return kExitUsage;
  }
  auto registry = languages::Registry::Load(config->languages_dir);
  if (!registry) {
    std::cerr << "polyrun: " << registry.error().message() << "\n";
    return kExitUsage;
  }
  registry->ProbeVersions(config->cache_dir);
  // Without a working sandbox no language is usable, whatever its toolchain.
  auto cgroups = sandbox::DetectCgroups(config->cgroup_root);
  std::string host_problem =
      cgroups ? ""
              : "the host cannot sandbox: " + cgroups.error().message() + " (see polyrun doctor)";

  json out = json::array();
  int usable = 0;
  for (const auto& info : engine::LanguageInfos(*registry, host_problem)) {
    usable += info.usable ? 1 : 0;
    out.push_back(engine::ToJson(info));
  }
  if (as_json) {
    std::cout << out.dump(2) << "\n" << std::flush;
  } else {
    std::cout << std::left << std::setw(12) << "ID" << std::setw(24) << "NAME" << std::setw(12)
              << "VERSION" << std::setw(8) << "USABLE" << std::setw(10) << "SESSIONS"
              << "NOTE\n";
    for (const auto& l : out) {
      std::cout << std::setw(12) << l["id"].get<std::string>() << std::setw(24)
                << l["name"].get<std::string>() << std::setw(12)
                << (l["version"].is_null() ? "-" : l["version"].get<std::string>()) << std::setw(8)
                << (l["usable"].get<bool>() ? "yes" : "no") << std::setw(10)
                << (l["sessions"].get<bool>() ? "yes" : "no")
                << (l["problem"].is_null() ? "" : l["problem"].get<std::string>()) << "\n";
    }
  }
  return usable > 0 ? 0 : 1;
}

int DoctorCommand(const SettingsFlags& settings, bool as_json) {
  auto checks = sandbox::CheckHost();
  bool all_ok = true;
  for (const auto& c : checks) all_ok &= c.ok;

  // The truth test: a real run through the whole sandbox.
  sandbox::HostCheck run{"sandboxed run", false, "", ""};
  auto config = LoadSettings(settings);
  if (!config) {
    run.detail = config.error().message();
  } else if (auto engine = engine::Engine::Create(*config); !engine) {
    run.detail = engine.error().message();
  } else {
    engine::ExecutionRequest req;
    req.language = "bash";
    req.code = "echo sandbox-ok; id -u";
    auto r = (*engine)->Run(req);
    run.ok = r.status == engine::Status::kOk && r.stdout_text == "sandbox-ok\n1000\n";
    run.detail =
        run.ok ? "bash ran as uid 1000 in " + std::to_string(r.usage.wall_ms) + " ms"
               : std::string(engine::StatusName(r.status)) + ": " + r.reason + " " + r.stderr_text;
  }
  if (!run.ok) run.fix = "fix the failed checks above; then run `polyrun doctor` again";
  all_ok &= run.ok;
  checks.push_back(run);

  if (as_json) {
    json out = json::array();
    for (const auto& c : checks) {
      out.push_back({{"check", c.name},
                     {"ok", c.ok},
                     {"detail", c.detail},
                     {"fix", c.fix.empty() ? json(nullptr) : json(c.fix)}});
    }
    std::cout << json{{"ok", all_ok}, {"checks", out}}.dump(2) << "\n" << std::flush;
  } else {
    for (const auto& c : checks) {
      std::cout << (c.ok ? "  ok    " : "  FAIL  ") << std::left << std::setw(20) << c.name
                << c.detail << "\n";
      if (!c.ok && !c.fix.empty())
        std::cout << "        " << std::setw(20) << ""
                  << "fix: " << c.fix << "\n";
    }
    std::cout << (all_ok ? "polyrun can run untrusted code on this host.\n"
                         : "polyrun cannot safely run untrusted code on this host.\n");
  }
  return all_ok ? 0 : 1;
}

int OptionsCommand() {
  std::cout << engine::OptionsMarkdown() << server::ServerOptionsMarkdown();
  return 0;
}

}  // namespace polyrun::cli
