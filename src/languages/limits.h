#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "util/error.h"
#include "util/options.h"

namespace polyrun::languages {

// Every limit a run has. Values are in base units: milliseconds, bytes or a count.
enum class Limit {
  kWallTime,
  kCpuTime,
  kMemory,
  kProcesses,
  kOutput,
  kFileSize,
  kOpenFiles,
  kDisk,
};
inline constexpr size_t kLimitCount = 8;

// The declarations (name, flag, type, default, help, range), in Limit order.
std::span<const OptionDecl, kLimitCount> LimitDecls();
const OptionDecl& DeclOf(Limit limit);
std::optional<Limit> LimitByName(std::string_view name);

// A partial set of limits: one layer of the precedence chain (request, operator override,
// language default, global default, ceiling).
struct LimitSet {
  std::array<std::optional<uint64_t>, kLimitCount> values{};

  std::optional<uint64_t>& operator[](Limit l) { return values[static_cast<size_t>(l)]; }
  const std::optional<uint64_t>& operator[](Limit l) const {
    return values[static_cast<size_t>(l)];
  }
  bool empty() const;
  // This set, with the limits it leaves unset taken from `base`.
  LimitSet Over(const LimitSet& base) const;
  // The value of a limit that must be set (a resolved set); throws std::logic_error otherwise.
  uint64_t Get(Limit l) const;
  // Sets a limit from user text ("5s", "256M", "64"); the error names the limit.
  Result<void> Set(std::string_view name, std::string_view text);
};

// The global defaults from the declarations.
LimitSet DefaultLimits();

}  // namespace polyrun::languages
