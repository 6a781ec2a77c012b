#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "util/error.h"

namespace polyrun {

using Millis = std::chrono::milliseconds;

// "250ms", "5s", "2m", "1h", or a bare integer meaning milliseconds. Fractions allowed for
// s/m/h ("1.5s"). Rejects negatives, empty strings, unknown units and overflow.
Result<Millis> ParseDuration(std::string_view text);

// "512", "64K", "256M", "1G", "1T" (binary multiples; a trailing "B"/"iB" is accepted:
// "256MiB", "1GB"). A bare integer means bytes.
Result<uint64_t> ParseSize(std::string_view text);

// Shortest exact rendering: 1500ms -> "1500ms", 5000ms -> "5s", 120000ms -> "2m".
std::string FormatDuration(Millis d);
// Exact binary rendering: 268435456 -> "256M", 1000 -> "1000".
std::string FormatSize(uint64_t bytes);

}  // namespace polyrun
