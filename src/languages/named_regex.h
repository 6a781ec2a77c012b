#pragma once

#include <map>
#include <optional>
#include <regex>
#include <string>

#include "util/error.h"

namespace polyrun::languages {

// A std::regex (ECMAScript) with Python-style named groups "(?P<name>...)", which std::regex
// lacks: the names are stripped at compile time and mapped to group numbers.
class NamedRegex {
 public:
  static Result<NamedRegex> Compile(const std::string& pattern);

  // Named captures of a match of the whole `line` (regex_search semantics), or nullopt.
  std::optional<std::map<std::string, std::string>> Match(const std::string& line) const;
  const std::string& pattern() const { return pattern_; }

 private:
  std::string pattern_;
  std::regex re_;
  std::map<std::string, size_t> groups_;
};

}  // namespace polyrun::languages
