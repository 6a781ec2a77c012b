#include "util/base64.h"

#include <sodium.h>

namespace polyrun {

std::string Base64Encode(std::string_view bytes) {
  constexpr int kVariant = sodium_base64_VARIANT_ORIGINAL;
  std::string out(sodium_base64_ENCODED_LEN(bytes.size(), kVariant), '\0');  // with its NUL
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(bytes.data()),
                    bytes.size(), kVariant);
  out.pop_back();
  return out;
}

Result<std::string> Base64Decode(std::string_view text) {
  // The alphabet is checked here first so that the error can name the position.
  size_t pad = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    bool alpha = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '+' || c == '/';
    if (c == '\n' || c == '\r') continue;
    if (c == '=') {
      ++pad;
      continue;
    }
    if (!alpha || pad > 0) {
      return Fail(Errc::kInvalidArgument,
                  "base64: invalid character at offset " + std::to_string(i));
    }
  }
  if (pad > 2) return Fail(Errc::kInvalidArgument, "base64: too much padding");
  std::string out(text.size() / 4 * 3 + 3, '\0');
  size_t n = 0;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), text.data(),
                        text.size(), "\r\n", &n, nullptr, sodium_base64_VARIANT_ORIGINAL) != 0) {
    return Fail(Errc::kInvalidArgument,
                "base64: truncated (length not a multiple of 4) or badly padded input");
  }
  out.resize(n);
  return out;
}

}  // namespace polyrun
