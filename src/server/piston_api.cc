// The Piston-compatible API (/api/v2). Placeholder until the handlers land.
#include "server/api.h"

namespace polyrun::server {

bool Api::HandlePiston(HttpRequest&, const std::shared_ptr<Exchange>&, const Caller&,
                       std::chrono::steady_clock::time_point) {
  return false;
}

std::shared_ptr<WsHandler> Api::PistonWs(const Caller&) {
  return nullptr;
}

}  // namespace polyrun::server
