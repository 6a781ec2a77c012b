#pragma once

#include <time.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "util/error.h"

namespace polyrun::engine {

// Compiled artifacts on disk, keyed by a SHA-256 over everything that determines the compiler's
// output (see Engine::Run: language, toolchain version, expanded command, env, every file).
//
// Safety: the directory is the engine's own (0700), never bound into a sandbox; a run gets a
// private copy of the bytes written into its own /work, so no run can alter another's binary.
// Entries are written to a temporary name and renamed, so readers see whole entries or none;
// concurrent writers of one key race harmlessly (same bytes, last rename wins). Bounded: after a
// store, least recently used entries (by mtime, refreshed on every hit) are evicted until the
// total is below 90% of max_bytes; one evictor at a time (flock), others skip.
class ArtifactCache {
 public:
  using Artifacts = std::map<std::string, std::string>;  // name -> bytes

  // `dir` is created if missing. max_bytes 0 disables the cache (every lookup misses).
  static Result<ArtifactCache> Open(const std::string& dir, uint64_t max_bytes);
  ArtifactCache() = default;

  bool enabled() const { return max_bytes_ > 0 && !dir_.empty(); }
  std::optional<Artifacts> Lookup(const std::string& key) const;
  // Failures are reported but harmless to the caller: the artifact is simply not cached.
  Result<void> Store(const std::string& key, const Artifacts& artifacts) const;
  // Total bytes of all entries (for tests and eviction).
  uint64_t TotalBytes() const;

 private:
  struct Entry {
    std::string name;
    timespec mtime;
    uint64_t size;
  };
  std::vector<Entry> Entries() const;
  std::string PathFor(const std::string& key) const;
  // Removes least recently used entries while the total is above the bound.
  void Evict() const;

  std::string dir_;
  uint64_t max_bytes_ = 0;
};

}  // namespace polyrun::engine
