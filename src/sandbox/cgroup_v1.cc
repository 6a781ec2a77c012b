// cgroup v1: memory, pids and cpuacct live in separate hierarchies, so a run owns one
// directory in each. v1 has no cgroup.kill; the PID-namespace init's death ends the tree and
// KillAll() signals any listed pid as a second fence.
#include <unistd.h>

#include <iterator>

#include "sandbox/cgroup.h"
#include "sandbox/cgroup_common.h"

namespace polyrun::sandbox {

namespace {

using namespace cgroup_internal;

class CgroupV1 final : public Cgroup {
 public:
  CgroupV1(std::string memory, std::string pids, std::string cpuacct)
      : memory_(std::move(memory)), pids_(std::move(pids)), cpuacct_(std::move(cpuacct)) {}
  ~CgroupV1() override {
    // Best effort: a destructor has no one to report to; Remove() is the checked path.
    if (!Remove()) return;
  }

  Result<void> AddProcess(pid_t pid) override {
    for (const auto* dir : {&memory_, &pids_, &cpuacct_}) {
      if (auto r = Write(*dir, "cgroup.procs", std::to_string(pid)); !r) return r;
    }
    return {};
  }

  std::vector<std::string> SelfJoinFiles() const override {
    return {memory_ + "/tasks", pids_ + "/tasks", cpuacct_ + "/tasks"};
  }
  std::vector<std::string> SelfMoveFiles() const override { return SelfJoinFiles(); }

  Result<void> SetLimits(const CgroupLimits& limits) override {
    const auto page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
    const std::string bytes = std::to_string(limits.memory_bytes);
    // With swap accounting, memory+swap is capped at the same bytes, or the limit leaks into
    // swap. The kernel refuses a memory limit above memory+swap's at every step (EINVAL), so
    // a raise writes memory+swap first and a lowering writes it last.
    std::vector<const char*> files = {"memory.limit_in_bytes"};
    if (Exists(memory_, "memory.memsw.limit_in_bytes")) {
      const bool raise = memory_limit_ < limits.memory_bytes;
      files.insert(raise ? files.begin() : files.end(), "memory.memsw.limit_in_bytes");
    }
    for (const char* file : files) {
      if (auto r = WriteChecked(memory_, file, bytes, page); !r) return r;
    }
    memory_limit_ = limits.memory_bytes;
    return WriteChecked(pids_, "pids.max", std::to_string(limits.pids));
  }

  Result<CgroupUsage> Usage() override {
    CgroupUsage u;
    auto cpu = Read(cpuacct_, "cpuacct.usage");
    if (!cpu) return std::unexpected(cpu.error());
    u.cpu_ns = ToU64(*cpu);
    auto peak = Read(memory_, "memory.max_usage_in_bytes");
    if (!peak) return std::unexpected(peak.error());
    u.memory_peak_bytes = ToU64(*peak);
    auto oom = Read(memory_, "memory.oom_control");
    if (!oom) return std::unexpected(oom.error());
    u.oom_kills = ParseKeyedValue(*oom, "oom_kill");
    return u;
  }

  void KillAll() override {
    for (const auto* dir : {&memory_, &pids_, &cpuacct_}) KillProcs(*dir);
  }

  bool Empty() override { return ProcsEmpty(pids_); }

  Result<void> Remove() override {
    if (removed_) return {};
    Result<void> result;
    for (const auto* dir : {&memory_, &pids_, &cpuacct_}) {
      if (auto r = RemoveDir(*dir); !r && result) result = r;
    }
    removed_ = true;
    return result;
  }

 private:
  std::string memory_, pids_, cpuacct_;
  // What memory.limit_in_bytes holds: unlimited when the directory is made, then only what
  // SetLimits wrote (a cgroup whose SetLimits failed is not used). Known here, it costs the cold
  // path no read.
  uint64_t memory_limit_ = UINT64_MAX;
  bool removed_ = false;
};

class CgroupV1Manager final : public CgroupManager {
 public:
  CgroupV1Manager(SharedDir memory, SharedDir pids, SharedDir cpuacct)
      : memory_(std::move(memory)), pids_(std::move(pids)), cpuacct_(std::move(cpuacct)) {}

  Result<std::unique_ptr<Cgroup>> Create(const std::string& name,
                                         const CgroupLimits& limits) override {
    std::string mem = memory_.path() + "/" + name, pids = pids_.path() + "/" + name,
                cpu = cpuacct_.path() + "/" + name;
    const std::string* dirs[] = {&mem, &pids, &cpu};
    for (size_t i = 0; i < std::size(dirs); ++i) {
      if (auto r = MakeRunDir(*dirs[i]); !r) {
        // Those made here are new and empty.
        while (i-- > 0) ::rmdir(dirs[i]->c_str());
        return std::unexpected(r.error());
      }
    }
    auto cg = std::make_unique<CgroupV1>(mem, pids, cpu);
    if (auto r = cg->SetLimits(limits); !r) return std::unexpected(r.error());
    // Only a preference (no swap use for runs); a kernel without the file is no error.
    if (Exists(mem, "memory.swappiness") && !Write(mem, "memory.swappiness", "0")) {
      return Fail(Errc::kLimitUnavailable, mem + "/memory.swappiness: could not be set to 0");
    }
    return cg;
  }

  std::string Describe() const override {
    return "cgroup v1 (memory: " + memory_.path() + ", pids: " + pids_.path() +
           ", cpuacct: " + cpuacct_.path() + ")";
  }

 private:
  SharedDir memory_, pids_, cpuacct_;
};

}  // namespace

Result<std::unique_ptr<CgroupManager>> MakeCgroupV1(const std::string& memory,
                                                    const std::string& pids,
                                                    const std::string& cpuacct) {
  auto mem = SharedDir::Open(memory);
  if (!mem) return std::unexpected(mem.error());
  auto pid = SharedDir::Open(pids);
  if (!pid) return std::unexpected(pid.error());
  auto cpu = SharedDir::Open(cpuacct);
  if (!cpu) return std::unexpected(cpu.error());
  for (const auto& [dir, file] :
       {std::pair{&memory, "memory.limit_in_bytes"}, std::pair{&pids, "pids.max"},
        std::pair{&cpuacct, "cpuacct.usage"}}) {
    if (!cgroup_internal::Exists(*dir, file)) {
      return Fail(Errc::kUnsupported, *dir + ": no " + file + " (controller not mounted here?)");
    }
  }
  for (const auto* dir : {&memory, &pids, &cpuacct}) cgroup_internal::SweepDeadRuns(*dir);
  return std::make_unique<CgroupV1Manager>(std::move(*mem), std::move(*pid), std::move(*cpu));
}

}  // namespace polyrun::sandbox
