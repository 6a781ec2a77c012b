#include "languages/limits_toml.h"

namespace polyrun::languages {

Result<LimitSet> ParseLimitTable(const toml::table& table, const std::string& where,
                                 LimitSet base) {
  for (const auto& [key, value] : table) {
    std::string text;
    if (value.is_string()) {
      text = value.as_string().str;
    } else if (value.is_integer() && value.as_integer() >= 0) {
      text = std::to_string(value.as_integer());
    } else {
      return Fail(Errc::kParse,
                  where + "." + key + ": expected a string such as \"5s\" or a number");
    }
    if (auto r = base.Set(key, text); !r) {
      return Fail(Errc::kParse, where + "." + key + ": " + r.error().message());
    }
  }
  return base;
}

}  // namespace polyrun::languages
