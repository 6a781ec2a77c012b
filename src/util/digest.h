#pragma once

#include <string>
#include <string_view>

namespace polyrun {

// Incremental SHA-256 (libsodium: OpenSSL's libcrypto cost every polyrun process ~1 ms to load).
// Fields are length-prefixed by Add so that concatenations cannot collide ("ab"+"c" vs "a"+"bc").
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  Sha256& Add(std::string_view field);
  // Plain bytes, no length prefix (hashes that must match `sha256sum`).
  Sha256& AddRaw(std::string_view bytes);
  std::string HexDigest();  // finishes the hash; call once

 private:
  void* state_;  // crypto_hash_sha256_state, kept out of this header
};

}  // namespace polyrun
