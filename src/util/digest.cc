#include "util/digest.h"

#include <sodium.h>

#include <cstdint>

namespace polyrun {

// No sodium_init: it picks CPU-specific implementations and seeds the RNG, and none of what
// polyrun uses from libsodium (SHA-256, base64, sodium_memcmp) has either; the artifact cache's
// first key on a compiled run's path would pay it for nothing.
Sha256::Sha256() : state_(new crypto_hash_sha256_state) {
  crypto_hash_sha256_init(static_cast<crypto_hash_sha256_state*>(state_));
}

Sha256::~Sha256() {
  delete static_cast<crypto_hash_sha256_state*>(state_);
}

Sha256& Sha256::Add(std::string_view field) {
  uint64_t len = field.size();
  unsigned char prefix[8];
  for (int i = 0; i < 8; ++i) prefix[i] = static_cast<unsigned char>(len >> (8 * i));
  AddRaw(std::string_view(reinterpret_cast<const char*>(prefix), sizeof prefix));
  return AddRaw(field);
}

Sha256& Sha256::AddRaw(std::string_view bytes) {
  crypto_hash_sha256_update(static_cast<crypto_hash_sha256_state*>(state_),
                            reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
  return *this;
}

std::string Sha256::HexDigest() {
  unsigned char md[crypto_hash_sha256_BYTES];
  crypto_hash_sha256_final(static_cast<crypto_hash_sha256_state*>(state_), md);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * sizeof md);
  for (unsigned char b : md) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

}  // namespace polyrun
