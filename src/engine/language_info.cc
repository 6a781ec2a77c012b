#include "engine/language_info.h"

namespace polyrun::engine {

using nlohmann::json;

std::vector<LanguageInfo> LanguageInfos(const languages::Registry& registry,
                                        const std::string& host_problem) {
  std::vector<LanguageInfo> out;
  for (const auto& e : registry.entries()) {
    LanguageInfo info;
    const auto* l = e.language.get();
    info.id = e.id;
    info.name = l ? l->name : e.id;
    info.version = e.version;
    info.usable = e.usable && host_problem.empty();
    if (!info.usable) info.problem = !e.usable ? e.problem : host_problem;
    if (l) {
      info.aliases = l->aliases;
      info.extensions = l->extensions;
      info.compiled = l->compile.has_value();
      info.sessions = l->session.has_value();
    }
    out.push_back(std::move(info));
  }
  return out;
}

json ToJson(const LanguageInfo& l) {
  return {{"id", l.id},
          {"name", l.name},
          {"version", l.version.empty() ? json(nullptr) : json(l.version)},
          {"usable", l.usable},
          {"problem", l.usable ? json(nullptr) : json(l.problem)},
          {"aliases", l.aliases},
          {"extensions", l.extensions},
          {"compiled", l.compiled},
          {"sessions", l.sessions}};
}

}  // namespace polyrun::engine
