#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <regex>
#include <string>

#include "util/error.h"

namespace polyrun::languages {

// A std::regex (ECMAScript) with Python-style named groups "(?P<name>...)", which std::regex
// lacks: the names are stripped and mapped to group numbers. Building a std::regex costs
// ~100 µs, so the automaton is built on first use (or by Validate()); copies share it.
class NamedRegex {
 public:
  // Checks the group syntax only; Validate() checks the whole pattern.
  static Result<NamedRegex> Compile(const std::string& pattern);

  // Builds the automaton now; an error names the pattern. Thread-safe.
  Result<void> Validate() const;
  // Named captures of a match in `line` (regex_search semantics), or nullopt. A pattern that
  // does not compile matches nothing.
  std::optional<std::map<std::string, std::string>> Match(const std::string& line) const;
  const std::string& pattern() const { return pattern_; }

 private:
  struct Lazy {
    std::once_flag once;
    std::optional<std::regex> re;
    std::string error;
  };
  const Lazy& Built() const;

  std::string pattern_;
  std::string plain_;
  std::map<std::string, size_t> groups_;
  std::shared_ptr<Lazy> lazy_ = std::make_shared<Lazy>();
};

}  // namespace polyrun::languages
