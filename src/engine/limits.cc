#include "engine/limits.h"

namespace polyrun::engine {

using languages::kLimitCount;
using languages::LimitDecls;
using languages::LimitSet;

Result<LimitSet> ResolveLimits(const LimitLayers& layers) {
  LimitSet out;
  const LimitSet defaults = languages::DefaultLimits();
  for (size_t i = 0; i < kLimitCount; ++i) {
    const auto& decl = LimitDecls()[i];
    const auto& ceiling = layers.ceiling.values[i];
    if (const auto& req = layers.request.values[i]; req) {
      if (auto r = CheckOptionNumber(decl, *req); !r) return std::unexpected(r.error());
      if (ceiling && *req > *ceiling) {
        return Fail(Errc::kInvalidArgument,
                    "limits." + std::string(decl.name) + ": " + FormatOptionNumber(decl, *req) +
                        " exceeds the operator's ceiling of " + FormatOptionNumber(decl, *ceiling));
      }
      out.values[i] = req;
      continue;
    }
    std::optional<uint64_t> v;
    for (const auto* layer :
         {&layers.operator_override, &layers.language, &layers.global, &defaults}) {
      if (layer->values[i]) {
        v = layer->values[i];
        break;
      }
    }
    if (ceiling.has_value() && v.has_value() && *v > *ceiling) v = ceiling;
    out.values[i] = v;
  }
  return out;
}

}  // namespace polyrun::engine
