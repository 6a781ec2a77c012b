#include "languages/named_regex.h"

namespace polyrun::languages {

Result<NamedRegex> NamedRegex::Compile(const std::string& pattern) {
  NamedRegex out;
  out.pattern_ = pattern;
  std::string plain;
  size_t group = 0;
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      plain += c;
      plain += pattern[++i];
      continue;
    }
    if (in_class) {
      in_class = c != ']';
      plain += c;
      continue;
    }
    if (c == '[') {
      in_class = true;
      plain += c;
      continue;
    }
    if (c == '(') {
      if (pattern.compare(i, 4, "(?P<") == 0) {
        size_t close = pattern.find('>', i + 4);
        if (close == std::string::npos) {
          return Fail(Errc::kParse, "regex \"" + pattern + "\": unterminated group name");
        }
        out.groups_[pattern.substr(i + 4, close - i - 4)] = ++group;
        plain += '(';
        i = close;
        continue;
      }
      if (i + 1 >= pattern.size() || pattern[i + 1] != '?') ++group;
    }
    plain += c;
  }
  out.plain_ = std::move(plain);
  return out;
}

const NamedRegex::Lazy& NamedRegex::Built() const {
  std::call_once(lazy_->once, [this] {
    try {
      lazy_->re.emplace(plain_, std::regex::ECMAScript | std::regex::optimize);
    } catch (const std::regex_error& e) {
      lazy_->error = "regex \"" + pattern_ + "\": " + e.what();
    }
  });
  return *lazy_;
}

Result<void> NamedRegex::Validate() const {
  const Lazy& l = Built();
  if (!l.re) return Fail(Errc::kParse, l.error);
  return {};
}

std::optional<std::map<std::string, std::string>> NamedRegex::Match(const std::string& line) const {
  const Lazy& l = Built();
  if (!l.re) return std::nullopt;
  std::smatch m;
  if (!std::regex_search(line, m, *l.re)) return std::nullopt;
  std::map<std::string, std::string> out;
  for (const auto& [name, idx] : groups_) {
    if (idx < m.size() && m[idx].matched) out[name] = m[idx].str();
  }
  return out;
}

}  // namespace polyrun::languages
