#pragma once

#include <string>
#include <string_view>

#include "util/error.h"
#include "util/unique_fd.h"

namespace polyrun {

// Reads a whole regular file the host trusts (config, manifests). Refuses anything but a
// regular file and anything larger than max_bytes.
Result<std::string> ReadTrustedFile(const std::string& path, size_t max_bytes = 16u << 20);

// Reads a small file such as a cgroup control file relative to a directory fd, without
// following symlinks.
Result<std::string> ReadFileAt(int dir_fd, const char* name, size_t max_bytes = 1u << 16);

// Writes `data` to an existing file relative to dir_fd (O_WRONLY, no create, no symlink follow).
Result<void> WriteFileAt(int dir_fd, const char* name, std::string_view data);

// Writes all bytes, retrying on EINTR and short writes. Returns false on error (errno set).
bool WriteAll(int fd, const void* data, size_t len);

// Replaces `path` with `data` atomically (a temporary beside it, then rename(2)), so readers
// never see a partial file. For caches: a failure leaves the old file in place.
Result<void> WriteFileAtomic(const std::string& path, std::string_view data);

// "size:mtime" of a regular file (symlinks followed), "" when there is none: changes whenever
// the file is rewritten. For cache keys.
std::string FileStamp(const std::string& path);

// Opens a directory without following a final symlink.
Result<UniqueFd> OpenDir(const std::string& path);

}  // namespace polyrun
