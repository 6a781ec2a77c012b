#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "util/error.h"

namespace polyrun {

// The kinds of value an option can hold. Durations are stored in milliseconds, sizes in bytes.
enum class OptionType { kDuration, kSize, kCount, kString, kBool };

// One option, declared once; CLI flags, config-file keys and docs/options.md come from it.
struct OptionDecl {
  std::string_view name;  // config key within its table, e.g. "wall_time"
  std::string_view flag;  // CLI flag without dashes, e.g. "wall-time"; empty: none
  OptionType type;
  std::string_view default_value;  // as a user would write it; empty: no default
  std::string_view help;
  uint64_t min = 0;
  uint64_t max = UINT64_MAX;
};

std::string_view OptionTypeName(OptionType type);  // "duration", "size", …
std::string_view OptionUnit(OptionType type);      // "ms", "bytes", "", …

// Parses `text` for a numeric option (duration, size or count) and checks min/max. Errors name
// the option: `wall_time: invalid duration "5x": …`.
Result<uint64_t> ParseOptionNumber(const OptionDecl& decl, std::string_view text);
// Checks a number already in base units (JSON numbers: ms and bytes) against min/max.
Result<uint64_t> CheckOptionNumber(const OptionDecl& decl, uint64_t value);
// Renders a base-unit value the way a user would write it ("5s", "256M", "64").
std::string FormatOptionNumber(const OptionDecl& decl, uint64_t value);

}  // namespace polyrun
