#include "sandbox/cgroup_common.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <thread>

#include "util/files.h"
#include "util/strings.h"

namespace polyrun::sandbox::cgroup_internal {

Result<std::string> Read(const std::string& dir, const std::string& file) {
  auto fd = OpenDir(dir);
  if (!fd) return std::unexpected(fd.error());
  return ReadFileAt(fd->get(), file.c_str());
}

Result<void> Write(const std::string& dir, const std::string& file, const std::string& value) {
  auto fd = OpenDir(dir);
  if (!fd) return std::unexpected(fd.error());
  auto r = WriteFileAt(fd->get(), file.c_str(), value);
  if (!r) {
    Error e = r.error();
    e.context = dir + "/" + e.context;
    return std::unexpected(e);
  }
  return {};
}

bool Exists(const std::string& dir, const std::string& file) {
  struct stat st {};
  return ::stat((dir + "/" + file).c_str(), &st) == 0;
}

Result<void> WriteChecked(const std::string& dir, const std::string& file, const std::string& value,
                          uint64_t round_to) {
  if (auto w = Write(dir, file, value); !w) {
    Error e = w.error();
    e.code = Errc::kLimitUnavailable;
    return std::unexpected(e);
  }
  auto back = Read(dir, file);
  if (!back) {
    Error e = back.error();
    e.code = Errc::kLimitUnavailable;
    return std::unexpected(e);
  }
  std::string got(Trim(*back));
  std::string want = value;
  if (round_to > 0) {
    uint64_t v = 0;
    std::from_chars(value.data(), value.data() + value.size(), v);
    want = std::to_string(v / round_to * round_to);
  }
  if (got != want && got != value) {
    return Fail(Errc::kLimitUnavailable,
                dir + "/" + file + ": wrote " + value + " but read back " + got);
  }
  return {};
}

Result<void> MakeDir(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) return SysFail("mkdir", path);
  return {};
}

void KillProcs(const std::string& dir) {
  auto procs = Read(dir, "cgroup.procs");
  if (!procs) return;
  for (const auto& line : Split(*procs, '\n')) {
    pid_t pid = 0;
    auto t = Trim(line);
    if (t.empty()) continue;
    std::from_chars(t.data(), t.data() + t.size(), pid);
    // Only pids listed in a cgroup we created are ours to end.
    if (pid > 1) ::kill(pid, SIGKILL);
  }
}

bool ProcsEmpty(const std::string& dir) {
  auto procs = Read(dir, "cgroup.procs");
  return procs && Trim(*procs).empty();
}

Result<void> RemoveDir(const std::string& dir) {
  // A task that has been killed leaves the cgroup only once the kernel has finished its exit;
  // rmdir reports EBUSY until then. Bounded: ~2 s in total.
  for (int attempt = 0; attempt < 200; ++attempt) {
    if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) return {};
    if (errno != EBUSY) return SysFail("rmdir", dir);
    KillProcs(dir);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return SysFail("rmdir", dir, EBUSY);
}

}  // namespace polyrun::sandbox::cgroup_internal

namespace polyrun::sandbox::cgroup_internal {
uint64_t ToU64(std::string_view text) {
  text = Trim(text);
  uint64_t v = 0;
  std::from_chars(text.data(), text.data() + text.size(), v);
  return v;
}
}  // namespace polyrun::sandbox::cgroup_internal
