#include "languages/limits.h"

#include <stdexcept>

namespace polyrun::languages {

namespace {

constexpr uint64_t kMiB = 1ull << 20;

// Each limit is declared here and nowhere else.
constexpr std::array<OptionDecl, kLimitCount> kDecls = {{
    {"wall_time", "wall-time", OptionType::kDuration, "5s",
     "Wall-clock time for the run (the compile stage has its own)", 1, 24ull * 3600 * 1000},
    {"cpu_time", "cpu-time", OptionType::kDuration, "5s", "CPU time of the whole process tree", 1,
     24ull * 3600 * 1000},
    {"memory", "memory", OptionType::kSize, "256M",
     "Memory of the whole process tree (RSS, page cache and tmpfs files)", 8 * kMiB, 1ull << 40},
    {"processes", "processes", OptionType::kCount, "64",
     "Processes and threads of the program alive at once (the sandbox's own init is not counted)",
     1, 1ull << 22},
    {"output", "output-limit", OptionType::kSize, "1M",
     "Bytes of stdout and of stderr kept, each and together; beyond it the run is stopped "
     "with status output_limit",
     1, 1ull << 32},
    {"file_size", "file-size", OptionType::kSize, "16M", "Largest file the program may write", 1,
     1ull << 40},
    {"open_files", "open-files", OptionType::kCount, "256", "Open file descriptors per process", 16,
     1u << 20},
    {"disk", "disk", OptionType::kSize, "64M",
     "Size of each writable filesystem (/work, /tmp); counts against memory", kMiB, 1ull << 40},
}};

}  // namespace

std::span<const OptionDecl, kLimitCount> LimitDecls() {
  return kDecls;
}

const OptionDecl& DeclOf(Limit limit) {
  return kDecls[static_cast<size_t>(limit)];
}

std::optional<Limit> LimitByName(std::string_view name) {
  for (size_t i = 0; i < kLimitCount; ++i) {
    if (kDecls[i].name == name) return static_cast<Limit>(i);
  }
  return std::nullopt;
}

LimitSet LimitSet::Over(const LimitSet& base) const {
  LimitSet out = *this;
  for (size_t i = 0; i < kLimitCount; ++i) {
    if (!out.values[i]) out.values[i] = base.values[i];
  }
  return out;
}

bool LimitSet::empty() const {
  for (const auto& v : values) {
    if (v) return false;
  }
  return true;
}

uint64_t LimitSet::Get(Limit l) const {
  const auto& v = values[static_cast<size_t>(l)];
  if (!v.has_value())
    throw std::logic_error("limit " + std::string(DeclOf(l).name) + " is not resolved");
  return *v;
}

Result<void> LimitSet::Set(std::string_view name, std::string_view text) {
  auto limit = LimitByName(name);
  if (!limit) return Fail(Errc::kInvalidArgument, "unknown limit \"" + std::string(name) + "\"");
  auto v = ParseOptionNumber(DeclOf(*limit), text);
  if (!v) return std::unexpected(v.error());
  (*this)[*limit] = *v;
  return {};
}

LimitSet DefaultLimits() {
  LimitSet out;
  for (size_t i = 0; i < kLimitCount; ++i) {
    out.values[i] = ParseOptionNumber(kDecls[i], kDecls[i].default_value).value();
  }
  return out;
}

}  // namespace polyrun::languages
