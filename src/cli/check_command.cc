#include "cli/check_command.h"

#include <iostream>

#include "cli/exit_codes.h"
#include "cli/source_files.h"
#include "engine/engine.h"
#include "engine/result_json.h"

namespace polyrun::cli {

namespace {

int Usage(const std::string& message) {
  std::cerr << "polyrun check: " << message << "\n";
  return kExitUsage;
}

}  // namespace

int CheckCommand(const CheckOptions& o, const SettingsFlags& settings) {
  if (o.code && !o.files.empty()) return Usage("give either -c CODE or files, not both");
  if (!o.code && o.files.empty()) return Usage("nothing to check: give FILE... or -l LANG -c CODE");
  if (o.code && o.language.empty()) return Usage("-c needs -l LANG");
  auto config = LoadSettings(settings);
  if (!config) return Usage(config.error().message());
  auto engine = engine::Engine::Create(*config);
  if (!engine) {
    std::cerr << "polyrun: " << engine.error().message() << "\n";
    return kExitInternal;
  }
  engine::CheckRequest req;
  req.language = o.language;
  if (o.code) {
    const auto* entry = (*engine)->registry().Find(o.language);
    if (entry == nullptr || !entry->language) {
      return Usage("unknown language \"" + o.language + "\" (see `polyrun languages`)");
    }
    req.files.push_back({entry->language->entry, *o.code});
  } else {
    auto files = ReadSourceFiles(o.files);
    if (!files) return Usage(files.error().message());
    req.files = std::move(*files);
  }
  engine::CheckReport report = (*engine)->Check(req);
  if (!report.rejected.empty()) return Usage(report.rejected);

  bool findings = false;
  bool problems = false;
  for (const auto& f : report.files) {
    problems |= !f.problem.empty();
    findings |= !f.syntax_errors.empty() || std::any_of(f.imports.begin(), f.imports.end(),
                                                        [](const auto& i) { return !i.available; });
  }
  if (o.json) {
    std::cout << engine::ToJson(report).dump(2, ' ', false,
                                             nlohmann::json::error_handler_t::replace)
              << "\n";
  } else {
    for (const auto& f : report.files) {
      if (!f.problem.empty()) {
        std::cout << f.file << ": not checked: " << f.problem << "\n";
        continue;
      }
      std::cout << f.file << ": " << f.language << " (by " << f.detected_by << ")";
      std::cout << (f.syntax_errors.empty() ? ", parses" : "") << "\n";
      for (const auto& e : f.syntax_errors) {
        std::cout << "  " << e.file << ":" << e.line
                  << (e.column ? ":" + std::to_string(e.column) : "") << ": error: " << e.message
                  << "\n";
      }
      for (const auto& i : f.imports) {
        std::cout << "  imports " << i.name << " (line " << i.line << ")"
                  << (i.available ? "" : ": not available in the sandbox") << "\n";
      }
    }
  }
  if (problems) return kExitUsage;
  return findings ? 1 : 0;
}

}  // namespace polyrun::cli
