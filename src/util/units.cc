#include "util/units.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>

namespace polyrun {

namespace {

// Splits "12.5ms" into the number part and the unit part.
bool SplitNumber(std::string_view text, double& value, std::string_view& unit, bool& fractional) {
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) {
    ++i;
  }
  if (i == 0) return false;
  std::string_view num = text.substr(0, i);
  fractional = num.find('.') != std::string_view::npos;
  auto [ptr, ec] = std::from_chars(num.data(), num.data() + num.size(), value);
  if (ec != std::errc() || ptr != num.data() + num.size()) return false;
  unit = text.substr(i);
  return true;
}

std::string Quote(std::string_view s) {
  return "\"" + std::string(s) + "\"";
}

}  // namespace

Result<Millis> ParseDuration(std::string_view text) {
  double value = 0;
  std::string_view unit;
  bool fractional = false;
  if (!SplitNumber(text, value, unit, fractional)) {
    return Fail(Errc::kInvalidArgument,
                "invalid duration " + Quote(text) + ": expected a number with ms, s, m or h");
  }
  double ms_per_unit;
  if (unit.empty() || unit == "ms") {
    ms_per_unit = 1;
  } else if (unit == "s") {
    ms_per_unit = 1000;
  } else if (unit == "m" || unit == "min") {
    ms_per_unit = 60'000;
  } else if (unit == "h") {
    ms_per_unit = 3'600'000;
  } else {
    return Fail(Errc::kInvalidArgument, "invalid duration " + Quote(text) + ": unknown unit " +
                                            Quote(unit) + " (use ms, s, m or h)");
  }
  double ms = value * ms_per_unit;
  if (ms > 1e12) return Fail(Errc::kInvalidArgument, "duration " + Quote(text) + " is too large");
  if (ms != std::floor(ms)) {
    return Fail(Errc::kInvalidArgument,
                "invalid duration " + Quote(text) + ": finer than a millisecond");
  }
  return Millis(static_cast<int64_t>(ms));
}

Result<uint64_t> ParseSize(std::string_view text) {
  double value = 0;
  std::string_view unit;
  bool fractional = false;
  if (!SplitNumber(text, value, unit, fractional)) {
    return Fail(Errc::kInvalidArgument,
                "invalid size " + Quote(text) + ": expected a number with K, M, G or T");
  }
  std::string u(unit);
  if (u.size() >= 2 && (u.ends_with("iB"))) u.resize(u.size() - 2);
  if (u.size() >= 2 && u.back() == 'B') u.pop_back();
  if (u == "B") u.clear();
  double mult;
  if (u.empty()) {
    mult = 1;
  } else if (u == "K" || u == "k") {
    mult = 1024.0;
  } else if (u == "M" || u == "m") {
    mult = 1024.0 * 1024;
  } else if (u == "G" || u == "g") {
    mult = 1024.0 * 1024 * 1024;
  } else if (u == "T" || u == "t") {
    mult = 1024.0 * 1024 * 1024 * 1024;
  } else {
    return Fail(Errc::kInvalidArgument, "invalid size " + Quote(text) + ": unknown unit " +
                                            Quote(unit) + " (use K, M, G or T)");
  }
  double bytes = value * mult;
  if (bytes > 1e18) return Fail(Errc::kInvalidArgument, "size " + Quote(text) + " is too large");
  if (bytes != std::floor(bytes)) {
    return Fail(Errc::kInvalidArgument, "invalid size " + Quote(text) + ": not a whole byte");
  }
  return static_cast<uint64_t>(bytes);
}

std::string FormatDuration(Millis d) {
  int64_t ms = d.count();
  if (ms != 0 && ms % 3'600'000 == 0) return std::to_string(ms / 3'600'000) + "h";
  if (ms != 0 && ms % 60'000 == 0) return std::to_string(ms / 60'000) + "m";
  if (ms != 0 && ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

std::string FormatSize(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"T", "G", "M", "K"};
  static constexpr uint64_t kMult[] = {1ull << 40, 1ull << 30, 1ull << 20, 1ull << 10};
  for (size_t i = 0; i < 4; ++i) {
    if (bytes != 0 && bytes % kMult[i] == 0) return std::to_string(bytes / kMult[i]) + kUnits[i];
  }
  return std::to_string(bytes);
}

}  // namespace polyrun
