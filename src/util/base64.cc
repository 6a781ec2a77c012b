#include "util/base64.h"

#include <openssl/evp.h>

#include <memory>

namespace polyrun {

std::string Base64Encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3), '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()),
                          static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

Result<std::string> Base64Decode(std::string_view text) {
  // EVP_DecodeUpdate skips whitespace but also accepts '-' and other quirks; check the alphabet
  // first so the error can name the position.
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
  std::unique_ptr<EVP_ENCODE_CTX, decltype(&EVP_ENCODE_CTX_free)> ctx(EVP_ENCODE_CTX_new(),
                                                                      &EVP_ENCODE_CTX_free);
  if (!ctx) throw std::bad_alloc();
  EVP_DecodeInit(ctx.get());
  std::string out(text.size() / 4 * 3 + 3, '\0');
  int n = 0;
  int total = 0;
  if (EVP_DecodeUpdate(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &n,
                       reinterpret_cast<const unsigned char*>(text.data()),
                       static_cast<int>(text.size())) < 0) {
    return Fail(Errc::kInvalidArgument, "base64: malformed input");
  }
  total = n;
  if (EVP_DecodeFinal(ctx.get(), reinterpret_cast<unsigned char*>(out.data()) + total, &n) < 0) {
    return Fail(Errc::kInvalidArgument, "base64: truncated input (length not a multiple of 4)");
  }
  total += n;
  out.resize(static_cast<size_t>(total));
  return out;
}

}  // namespace polyrun
