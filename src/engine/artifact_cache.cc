#include "engine/artifact_cache.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "util/files.h"
#include "util/unique_fd.h"

namespace polyrun::engine {

namespace {

// Entry format: "PRAC1\n" then per artifact: name length, name, size (decimal, newline
// separated), bytes. Small and self-delimiting; a truncated or foreign file reads as a miss.
constexpr std::string_view kMagic = "PRAC1\n";
constexpr const char* kSuffix = ".art";

bool ValidKey(const std::string& key) {
  return key.size() == 64 && std::all_of(key.begin(), key.end(), [](char c) {
           return std::isxdigit(static_cast<unsigned char>(c));
         });
}

std::optional<uint64_t> ReadNumber(std::string_view data, size_t& pos) {
  size_t nl = data.find('\n', pos);
  if (nl == std::string_view::npos || nl == pos || nl - pos > 20) return std::nullopt;
  uint64_t v = 0;
  for (size_t i = pos; i < nl; ++i) {
    if (data[i] < '0' || data[i] > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(data[i] - '0');
  }
  pos = nl + 1;
  return v;
}

}  // namespace

Result<ArtifactCache> ArtifactCache::Open(const std::string& dir, uint64_t max_bytes) {
  ArtifactCache c;
  c.max_bytes_ = max_bytes;
  if (max_bytes == 0 || dir.empty()) return c;
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return SysFail("mkdir", "artifact cache " + dir);
  }
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) return SysFail("lstat", "artifact cache " + dir);
  if (!S_ISDIR(st.st_mode) || st.st_uid != ::geteuid() || (st.st_mode & 022) != 0) {
    // Anyone else who could write here could plant a binary for the next run.
    return Fail(Errc::kInvalidArgument, "artifact cache " + dir +
                                            ": must be a directory owned by us and not group- or "
                                            "world-writable");
  }
  c.dir_ = dir;
  return c;
}

std::string ArtifactCache::PathFor(const std::string& key) const {
  return dir_ + "/" + key + kSuffix;
}

std::optional<ArtifactCache::Artifacts> ArtifactCache::Lookup(const std::string& key) const {
  if (!enabled() || !ValidKey(key)) return std::nullopt;
  const std::string path = PathFor(key);
  auto data = ReadTrustedFile(path, max_bytes_);
  if (!data || !std::string_view(*data).starts_with(kMagic)) return std::nullopt;
  Artifacts out;
  size_t pos = kMagic.size();
  std::string_view d = *data;
  while (pos < d.size()) {
    auto name_len = ReadNumber(d, pos);
    if (!name_len || *name_len > 4096 || pos + *name_len > d.size()) return std::nullopt;
    std::string name(d.substr(pos, *name_len));
    pos += *name_len;
    auto size = ReadNumber(d, pos);
    if (!size || *size > d.size() - pos) return std::nullopt;
    out[name] = std::string(d.substr(pos, *size));
    pos += *size;
  }
  // Refresh the entry's age for LRU; a failure only makes it look older.
  ::utimensat(AT_FDCWD, path.c_str(), nullptr, 0);
  return out;
}

Result<void> ArtifactCache::Store(const std::string& key, const Artifacts& artifacts) const {
  if (!enabled()) return {};
  if (!ValidKey(key)) return Fail(Errc::kInvalidArgument, "artifact cache: bad key");
  std::string blob(kMagic);
  for (const auto& [name, bytes] : artifacts) {
    blob += std::to_string(name.size()) + "\n" + name + std::to_string(bytes.size()) + "\n";
    blob += bytes;
  }
  if (blob.size() > max_bytes_ / 4) return {};  // one entry never crowds out the rest
  if (auto w = WriteFileAtomic(PathFor(key), blob); !w) return w;
  Evict();
  return {};
}

std::vector<ArtifactCache::Entry> ArtifactCache::Entries() const {
  std::vector<Entry> out;
  DIR* d = ::opendir(dir_.c_str());
  if (d == nullptr) return out;
  const int fd = ::dirfd(d);
  while (dirent* e = fd >= 0 ? ::readdir(d) : nullptr) {
    struct stat st {};
    if (std::string_view(e->d_name).ends_with(kSuffix) &&
        ::fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
      out.push_back({e->d_name, st.st_mtim, static_cast<uint64_t>(st.st_size)});
    }
  }
  ::closedir(d);
  return out;
}

uint64_t ArtifactCache::TotalBytes() const {
  uint64_t total = 0;
  for (const auto& e : Entries()) total += e.size;
  return total;
}

void ArtifactCache::Evict() const {
  std::vector<Entry> entries = Entries();
  uint64_t total = 0;
  for (const auto& e : entries) total += e.size;
  if (total <= max_bytes_) return;
  UniqueFd lock(::open((dir_ + "/.evict.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!lock.valid() || ::flock(lock.get(), LOCK_EX | LOCK_NB) != 0)
    return;  // someone else is at it
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.mtime.tv_sec != b.mtime.tv_sec ? a.mtime.tv_sec < b.mtime.tv_sec
                                            : a.mtime.tv_nsec < b.mtime.tv_nsec;
  });
  const uint64_t target = max_bytes_ / 10 * 9;
  for (const auto& e : entries) {
    if (total <= target) break;
    if (::unlink((dir_ + "/" + e.name).c_str()) == 0 || errno == ENOENT) total -= e.size;
  }
}

}  // namespace polyrun::engine
