#include "sandbox/cgroup_common.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <memory>
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

Result<SharedDir> SharedDir::Open(const std::string& path) {
  // Each lap loses only to a last user removing the directory between our mkdir and our lock.
  constexpr int kAttempts = 8;
  for (int i = 0; i < kAttempts; ++i) {
    if (auto r = MakeDir(path); !r) return std::unexpected(r.error());
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd.valid()) {
      if (errno == ENOENT) continue;
      return SysFail("open", path);
    }
    int rc = 0;
    do {
      rc = ::flock(fd.get(), LOCK_SH);
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) return SysFail("flock", path);
    struct stat held {
    }, named{};
    if (::fstat(fd.get(), &held) != 0) return SysFail("fstat", path);
    if (::stat(path.c_str(), &named) != 0) {
      if (errno == ENOENT) continue;
      return SysFail("stat", path);
    }
    if (held.st_ino == named.st_ino && held.st_dev == named.st_dev) {
      return SharedDir(path, std::move(fd));
    }
  }
  return Fail(Errc::kConflict, path + ": removed again each time it was made (" +
                                   std::to_string(kAttempts) + " times)");
}

SharedDir::~SharedDir() {
  if (!fd_.valid()) return;
  // Refused while any other process holds its shared lock. Failing, it may drop ours (flock
  // converts by unlocking first), which is what closing does next anyway.
  if (::flock(fd_.get(), LOCK_EX | LOCK_NB) == 0) ::rmdir(path_.c_str());
}

namespace {
void (*run_dir_hook)(const std::string&) = nullptr;
}  // namespace

void SetRunDirHookForTesting(void (*made)(const std::string& dir)) {
  run_dir_hook = made;
}

Result<void> MakeRunDir(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) != 0) {
    if (errno != EEXIST) return SysFail("mkdir", path);
    return std::unexpected(Error{Errc::kConflict,
                                 path + ": exists already (left by an earlier process); not reused",
                                 "mkdir", EEXIST});
  }
  if (run_dir_hook != nullptr) run_dir_hook(path);
  return {};
}

void SweepDeadRuns(const std::string& parent) {
  std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir(parent.c_str()), ::closedir);
  if (!dir) return;
  const pid_t self = ::getpid();
  while (const dirent* entry = ::readdir(dir.get())) {
    // "run-<pid>-<n>", as CgroupManager::CreateRun names them.
    std::string_view name = entry->d_name;
    if (!name.starts_with("run-")) continue;
    name.remove_prefix(4);
    pid_t pid = 0;
    auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), pid);
    if (ec != std::errc() || pid <= 0 || end == name.data() + name.size() || *end != '-') continue;
    if (pid == self || ::kill(pid, 0) == 0 || errno != ESRCH) continue;
    ::rmdir((parent + "/" + entry->d_name).c_str());  // refused while it holds processes
  }
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
