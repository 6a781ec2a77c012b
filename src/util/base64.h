#pragma once

#include <string>
#include <string_view>

#include "util/error.h"

namespace polyrun {

// Standard base64 (RFC 4648 §4, with padding), through libsodium.
std::string Base64Encode(std::string_view bytes);
// Accepts line breaks between groups; anything else that is not base64 is an error naming the
// offending position.
Result<std::string> Base64Decode(std::string_view text);

}  // namespace polyrun
