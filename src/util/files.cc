#include "util/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

namespace polyrun {

namespace {

Result<std::string> ReadFd(int fd, const std::string& what, size_t max_bytes) {
  std::string out;
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return SysFail("read", what);
    }
    if (n == 0) break;
    if (out.size() + static_cast<size_t>(n) > max_bytes) {
      return Fail(Errc::kInvalidArgument,
                  what + ": larger than " + std::to_string(max_bytes) + " bytes");
    }
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

}  // namespace

Result<std::string> ReadTrustedFile(const std::string& path, size_t max_bytes) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (!fd.valid()) return SysFail("open", path);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return SysFail("fstat", path);
  if (!S_ISREG(st.st_mode)) return Fail(Errc::kInvalidArgument, path + ": not a regular file");
  return ReadFd(fd.get(), path, max_bytes);
}

Result<std::string> ReadFileAt(int dir_fd, const char* name, size_t max_bytes) {
  UniqueFd fd(::openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY));
  if (!fd.valid()) return SysFail("openat", name);
  return ReadFd(fd.get(), name, max_bytes);
}

bool WriteAll(int fd, const void* data, size_t len) {
  const char* p = static_cast<const char*>(data);
  while (len > 0) {
    ssize_t n = ::write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

Result<void> WriteFileAt(int dir_fd, const char* name, std::string_view data) {
  UniqueFd fd(::openat(dir_fd, name, O_WRONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY));
  if (!fd.valid()) return SysFail("openat", name);
  // Control files take one value per write(2); a short write means the kernel refused part.
  ssize_t n;
  do {
    n = ::write(fd.get(), data.data(), data.size());
  } while (n < 0 && errno == EINTR);
  if (n < 0) return SysFail("write", std::string(name) + " <- " + std::string(data));
  return {};
}

Result<void> WriteFileAtomic(const std::string& path, std::string_view data) {
  // Unique per process and call: threads of one server may write the same path at once.
  static std::atomic<uint64_t> counter{0};
  const std::string tmp =
      path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644));
  if (!fd.valid()) return SysFail("open", tmp);
  if (!WriteAll(fd.get(), data.data(), data.size())) {
    ::unlink(tmp.c_str());
    return SysFail("write", tmp);
  }
  fd.reset();
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return SysFail("rename", path);
  }
  return {};
}

Result<UniqueFd> OpenDir(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid()) return SysFail("open", path);
  return fd;
}

std::string FileStamp(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return "";
  return std::to_string(st.st_size) + ":" + std::to_string(st.st_mtim.tv_sec) + "." +
         std::to_string(st.st_mtim.tv_nsec);
}

}  // namespace polyrun
