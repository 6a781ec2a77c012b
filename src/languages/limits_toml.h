#pragma once

#include <string>
#include <toml.hpp>

#include "languages/limits.h"
#include "util/error.h"

namespace polyrun::languages {

// A TOML table of limits (`wall_time = "5s"`, `memory = 268435456`) over `base`; errors name
// `where.key`. Shared by manifests ([run.limits]) and the operator config ([limits], …).
Result<LimitSet> ParseLimitTable(const toml::table& table, const std::string& where,
                                 LimitSet base = {});

}  // namespace polyrun::languages
