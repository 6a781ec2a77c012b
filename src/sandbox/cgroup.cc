#include "sandbox/cgroup.h"

#include <unistd.h>

#include <atomic>
#include <charconv>
#include <map>

#include "sandbox/cgroup_common.h"
#include "util/files.h"
#include "util/strings.h"

namespace polyrun::sandbox {

Result<std::unique_ptr<Cgroup>> CgroupManager::CreateRun(const CgroupLimits& limits) {
  // Process-wide: two managers in one process (a server's engine beside a tool's) must never
  // name the same cgroup.
  static std::atomic<uint64_t> counter{0};
  // Each taken name was left by a process that died; more than a few in a row is a host that
  // leaks them, and the error says so rather than walking on.
  constexpr int kAttempts = 16;
  Result<std::unique_ptr<Cgroup>> made;
  for (int i = 0; i < kAttempts; ++i) {
    made = Create("run-" + std::to_string(::getpid()) + "-" + std::to_string(++counter), limits);
    if (made || made.error().code != Errc::kConflict) return made;
  }
  return made;
}

uint64_t ParseKeyedValue(const std::string& text, const std::string& key) {
  for (const auto& line : Split(text, '\n')) {
    auto parts = Split(std::string(Trim(line)), ' ');
    if (parts.size() == 2 && parts[0] == key) return cgroup_internal::ToU64(parts[1]);
  }
  return 0;
}

std::string CgroupPathFor(const std::string& proc_self_cgroup, const std::string& controller) {
  // Lines look like "4:memory:/a/b" (v1) or "0::/a/b" (v2; controller "").
  for (const auto& line : Split(proc_self_cgroup, '\n')) {
    auto first = line.find(':');
    auto second = line.find(':', first + 1);
    if (first == std::string::npos || second == std::string::npos) continue;
    std::string list = line.substr(first + 1, second - first - 1);
    std::string path = line.substr(second + 1);
    if (controller.empty()) {
      if (list.empty()) return path;
      continue;
    }
    for (const auto& c : Split(list, ',')) {
      if (c == controller) return path;
    }
  }
  return "";
}

namespace {

struct Mounts {
  std::string unified;                    // cgroup2 mount point
  std::map<std::string, std::string> v1;  // controller -> mount point
};

Mounts ReadCgroupMounts() {
  Mounts m;
  auto info = ReadTrustedFile("/proc/self/mountinfo");
  if (!info) return m;
  for (const auto& line : Split(*info, '\n')) {
    // "id parent maj:min root mountpoint opts [optional...] - fstype source superopts"
    auto sep = line.find(" - ");
    if (sep == std::string::npos) continue;
    auto left = Split(line.substr(0, sep), ' ');
    auto right = Split(line.substr(sep + 3), ' ');
    if (left.size() < 5 || right.size() < 3) continue;
    const std::string& mountpoint = left[4];
    if (right[0] == "cgroup2") {
      m.unified = mountpoint;
    } else if (right[0] == "cgroup") {
      for (const auto& opt : Split(right[2], ',')) m.v1.emplace(opt, mountpoint);
    }
  }
  return m;
}

}  // namespace

Result<std::unique_ptr<CgroupManager>> DetectCgroups(const std::string& root_override) {
  Mounts mounts = ReadCgroupMounts();
  auto self = ReadTrustedFile("/proc/self/cgroup");
  if (!self) return std::unexpected(self.error());

  Error v2_error{Errc::kUnsupported, "no cgroup2 mount", {}, 0};
  if (!root_override.empty() || !mounts.unified.empty()) {
    std::string parent = root_override;
    if (parent.empty()) {
      std::string own = CgroupPathFor(*self, "");
      parent = mounts.unified + (own == "/" ? "" : own);
    }
    auto controllers = cgroup_internal::Read(parent, "cgroup.controllers");
    bool has_memory = controllers && controllers->find("memory") != std::string::npos;
    if (has_memory || !root_override.empty()) {
      auto v2 = MakeCgroupV2(parent);
      if (v2) return v2;
      v2_error = v2.error();
      if (!root_override.empty()) return std::unexpected(v2_error);
    } else {
      v2_error.context = parent + ": the unified hierarchy has no memory controller";
    }
  }

  std::string dirs[3];
  const char* names[3] = {"memory", "pids", "cpuacct"};
  for (int i = 0; i < 3; ++i) {
    auto it = mounts.v1.find(names[i]);
    if (it == mounts.v1.end()) {
      return Fail(Errc::kUnsupported, std::string("no usable cgroups: ") + v2_error.message() +
                                          "; and no cgroup v1 '" + names[i] +
                                          "' hierarchy is mounted");
    }
    std::string own = CgroupPathFor(*self, names[i]);
    dirs[i] = it->second + (own == "/" ? "" : own) + "/polyrun";
  }
  return MakeCgroupV1(dirs[0], dirs[1], dirs[2]);
}

}  // namespace polyrun::sandbox
