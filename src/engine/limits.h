#pragma once

#include "languages/limits.h"
#include "util/error.h"

namespace polyrun::engine {

// The layers of DESIGN §4's limit precedence, highest first.
struct LimitLayers {
  languages::LimitSet request;            // what the caller asked for
  languages::LimitSet operator_override;  // config: [languages.ID.limits]
  languages::LimitSet language;           // manifest defaults
  languages::LimitSet global;             // config [limits] over the declared defaults
  languages::LimitSet ceiling;            // config [ceiling]: nothing may exceed it
};

// Pure: every limit gets the first value found in request > operator override > language >
// global, and must not exceed the ceiling. A request above the ceiling is refused with an error
// naming the limit; lower layers above it are clamped to it (the operator set both).
Result<languages::LimitSet> ResolveLimits(const LimitLayers& layers);

}  // namespace polyrun::engine
