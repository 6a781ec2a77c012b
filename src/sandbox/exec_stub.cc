// polyrun-exec (docs/performance.md, "Prebuilt sandboxes"): the program of a sandbox built ahead
// of its run. The init started it as it starts any program (PID 2, every limit, capability
// drop and the seccomp profile in place, cwd /work); it says it is ready with "R" on fd 3, then
// waits on its stdin for the run (exec_stub.h): it writes the run's files into /work and
// executes the run's argv with the run's environment. From its execve on, the process is the
// run's program, exactly as in a sandbox built for the run.
//
// fd 3 is close-on-exec: the program never has it. Before that, a failure is reported there as
// an InitReport (kSetupFailed for a file, kExecFailed for the execve), as an init reports its
// own, and the stub exits 127.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "sandbox/child_plan.h"
#include "util/files.h"

namespace {

constexpr int kReportFd = 3;
// Argument and environment strings with file names: execve itself takes at most a few MB.
constexpr uint64_t kMaxHeader = 64ull << 20;

[[noreturn]] void Fail(polyrun::sandbox::InitReport::Kind kind, const char* what, const char* path,
                       int err) {
  polyrun::sandbox::InitReport report;
  report.kind = kind;
  report.err = err;
  std::snprintf(report.what, sizeof report.what, "%s%s", what, path);
  polyrun::WriteAll(kReportFd, &report, sizeof report);
  ::_exit(127);
}

// False at EOF or on an error: the host destroyed the sandbox unused.
bool ReadExact(int fd, char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = ::read(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

// The header, walked front to back. A header that does not parse is the host's bug.
class Header {
 public:
  Header(const char* data, size_t size) : at_(data), end_(data + size) {}
  template <typename T>
  T Number() {
    T value{};
    if (static_cast<size_t>(end_ - at_) < sizeof value) Broken();
    std::memcpy(&value, at_, sizeof value);
    at_ += sizeof value;
    return value;
  }
  const char* String() {
    const void* nul = std::memchr(at_, '\0', static_cast<size_t>(end_ - at_));
    if (nul == nullptr) Broken();
    const char* s = at_;
    at_ = static_cast<const char*>(nul) + 1;
    return s;
  }
  std::vector<char*> Strings() {
    const auto count = Number<uint32_t>();
    std::vector<char*> out;
    out.reserve(std::min<size_t>(count, static_cast<size_t>(end_ - at_)) + 1);
    for (uint32_t i = 0; i < count; ++i) out.push_back(const_cast<char*>(String()));
    out.push_back(nullptr);
    return out;
  }

 private:
  [[noreturn]] static void Broken() {
    Fail(polyrun::sandbox::InitReport::kSetupFailed, "polyrun-exec: a malformed request", "",
         EINVAL);
  }
  const char* at_;
  const char* end_;
};

// As the init makes a file's directories (0755, through the umask): each missing one.
void MakeParents(char* name) {
  for (char* slash = std::strchr(name, '/'); slash != nullptr;
       slash = std::strchr(slash + 1, '/')) {
    *slash = '\0';
    if (::mkdir(name, 0755) != 0 && errno != EEXIST) {
      Fail(polyrun::sandbox::InitReport::kSetupFailed, "mkdir /work/", name, errno);
    }
    *slash = '/';
  }
}

void WriteFile(char* name, uint32_t mode, uint64_t size) {
  MakeParents(name);
  const int fd = ::open(name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd < 0) Fail(polyrun::sandbox::InitReport::kSetupFailed, "create /work/", name, errno);
  static char buf[64 * 1024];
  while (size > 0) {
    const size_t n = size < sizeof buf ? size : sizeof buf;
    if (!ReadExact(0, buf, n)) ::_exit(125);
    if (!polyrun::WriteAll(fd, buf, n)) {
      Fail(polyrun::sandbox::InitReport::kSetupFailed, "write /work/", name, errno);
    }
    size -= n;
  }
  ::close(fd);
}

}  // namespace

int main() {
  if (::fcntl(kReportFd, F_SETFD, FD_CLOEXEC) != 0 || !polyrun::WriteAll(kReportFd, "R", 1))
    return 125;
  uint64_t size = 0;
  if (!ReadExact(0, reinterpret_cast<char*>(&size), sizeof size)) return 125;
  if (size > kMaxHeader) {
    Fail(polyrun::sandbox::InitReport::kSetupFailed, "polyrun-exec: a request too large", "",
         E2BIG);
  }
  std::vector<char> data(size);
  if (!ReadExact(0, data.data(), size)) return 125;
  Header header(data.data(), size);
  std::vector<char*> argv = header.Strings();
  std::vector<char*> envp = header.Strings();
  if (argv.size() < 2) {
    Fail(polyrun::sandbox::InitReport::kSetupFailed, "polyrun-exec: no argv", "", EINVAL);
  }
  const auto files = header.Number<uint32_t>();
  struct File {
    char* name;
    uint32_t mode;
    uint64_t size;
  };
  std::vector<File> list;
  list.reserve(std::min<size_t>(files, size));
  for (uint32_t i = 0; i < files; ++i) {
    char* name = const_cast<char*>(header.String());
    const auto mode = header.Number<uint32_t>();
    list.push_back({name, mode, header.Number<uint64_t>()});
  }
  for (const File& f : list) WriteFile(f.name, f.mode, f.size);
  ::execve(argv[0], argv.data(), envp.data());
  Fail(polyrun::sandbox::InitReport::kExecFailed, "execve ", argv[0], errno);
}
