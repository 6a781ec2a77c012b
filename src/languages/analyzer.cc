#include "languages/analyzer.h"

#include <algorithm>
#include <charconv>

#include "util/strings.h"

namespace polyrun::languages {

namespace {

int ToInt(std::string_view s) {
  int v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && ptr == s.data() + s.size() && v >= 0 ? v : 0;
}

std::string_view BaseName(std::string_view path) {
  auto slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

}  // namespace

std::string ShebangInterpreter(std::string_view content) {
  if (!content.starts_with("#!")) return "";
  std::string_view line = content.substr(2, content.find('\n') - 2);
  std::vector<std::string> words;
  for (auto& w : Split(line, ' ')) {
    if (auto t = Trim(w); !t.empty()) words.emplace_back(t);
  }
  if (words.empty()) return "";
  size_t i = 0;
  if (BaseName(words[0]) == "env") {
    ++i;
    while (i < words.size() && words[i].starts_with("-")) ++i;  // env -S, -i, …
  }
  return i < words.size() ? std::string(BaseName(words[i])) : "";
}

Detection DetectLanguage(const Registry& registry, std::string_view file_name,
                         std::string_view content) {
  std::string_view base = BaseName(file_name);
  if (auto dot = base.rfind('.'); dot != std::string_view::npos && dot > 0) {
    if (const auto* e = registry.FindByExtension(std::string(base.substr(dot + 1)))) {
      return {e, "extension"};
    }
  }
  if (std::string interp = ShebangInterpreter(content); !interp.empty()) {
    for (std::string name = interp; !name.empty();) {
      if (const auto* e = registry.Find(name);
          e != nullptr && name.find('.') == std::string::npos) {
        return {e, "shebang"};
      }
      // python3.11 → python3 → python
      size_t end = name.find_last_not_of("0123456789.");
      if (end == std::string::npos || end + 1 == name.size()) break;
      name.resize(end + 1);
    }
  }
  const LanguageEntry* best = nullptr;
  int best_score = 0;
  bool tie = false;
  std::vector<std::string> lines = Split(content, '\n');
  for (const auto& e : registry.entries()) {
    if (!e.language) continue;
    int score = 0;
    for (const auto& pattern : e.language->detect) {
      if (std::any_of(lines.begin(), lines.end(),
                      [&](const std::string& l) { return pattern.Match(l).has_value(); })) {
        ++score;
      }
    }
    if (score > best_score) {
      best = &e;
      best_score = score;
      tie = false;
    } else if (score > 0 && score == best_score) {
      tie = true;
    }
  }
  if (best != nullptr && !tie) return {best, "content"};
  return {};
}

size_t ParseCheckOutput(std::string_view text, FileCheck& out) {
  size_t records = 0;
  for (const auto& line : Split(text, '\n')) {
    std::vector<std::string> f = Split(line, '\t');
    if (f.size() == 5 && f[0] == "syntax_error") {
      out.syntax_errors.push_back({f[1], ToInt(f[2]), ToInt(f[3]), std::string(Trim(f[4]))});
      ++records;
    } else if (f.size() == 4 && f[0] == "import" && !f[1].empty()) {
      out.imports.push_back({f[1], ToInt(f[2]), Trim(f[3]) == "1"});
      ++records;
    }
  }
  std::stable_sort(out.imports.begin(), out.imports.end(),
                   [](const auto& a, const auto& b) { return a.name < b.name; });
  out.imports.erase(std::unique(out.imports.begin(), out.imports.end(),
                                [](const auto& a, const auto& b) { return a.name == b.name; }),
                    out.imports.end());
  return records;
}

}  // namespace polyrun::languages
