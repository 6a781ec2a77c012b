#include "util/options.h"

#include <charconv>

#include "util/units.h"

namespace polyrun {

std::string_view OptionTypeName(OptionType type) {
  switch (type) {
    case OptionType::kDuration:
      return "duration";
    case OptionType::kSize:
      return "size";
    case OptionType::kCount:
      return "count";
    case OptionType::kString:
      return "string";
    case OptionType::kBool:
      return "bool";
  }
  return "?";
}

std::string_view OptionUnit(OptionType type) {
  switch (type) {
    case OptionType::kDuration:
      return "ms";
    case OptionType::kSize:
      return "bytes";
    default:
      return "";
  }
}

Result<uint64_t> CheckOptionNumber(const OptionDecl& decl, uint64_t value) {
  if (value < decl.min || value > decl.max) {
    return Fail(Errc::kInvalidArgument,
                std::string(decl.name) + ": " + FormatOptionNumber(decl, value) +
                    " is out of range (" + FormatOptionNumber(decl, decl.min) + " to " +
                    (decl.max == UINT64_MAX ? "unlimited" : FormatOptionNumber(decl, decl.max)) +
                    ")");
  }
  return value;
}

Result<uint64_t> ParseOptionNumber(const OptionDecl& decl, std::string_view text) {
  Result<uint64_t> value = Fail(Errc::kInternal, "not a number option");
  switch (decl.type) {
    case OptionType::kDuration: {
      auto d = ParseDuration(text);
      if (d) {
        value = static_cast<uint64_t>(d->count());
      } else {
        value = std::unexpected(d.error());
      }
      break;
    }
    case OptionType::kSize:
      value = ParseSize(text);
      break;
    case OptionType::kCount: {
      uint64_t v = 0;
      auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
      if (text.empty() || ec != std::errc() || ptr != text.data() + text.size()) {
        value = Fail(Errc::kInvalidArgument,
                     "invalid number \"" + std::string(text) + "\": expected a whole number");
      } else {
        value = v;
      }
      break;
    }
    default:
      break;
  }
  if (!value) {
    Error e = value.error();
    e.context = std::string(decl.name) + ": " + e.context;
    return std::unexpected(e);
  }
  return CheckOptionNumber(decl, *value);
}

std::string FormatOptionNumber(const OptionDecl& decl, uint64_t value) {
  switch (decl.type) {
    case OptionType::kDuration:
      return FormatDuration(Millis(static_cast<int64_t>(value)));
    case OptionType::kSize:
      return FormatSize(value);
    default:
      return std::to_string(value);
  }
}

}  // namespace polyrun
