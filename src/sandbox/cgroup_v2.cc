// cgroup v2: one unified directory per run. memory.oom.group makes an OOM kill take the whole
// run, and cgroup.kill (5.14+) ends every process in one write.
#include <fcntl.h>

#include <cerrno>

#include "sandbox/cgroup.h"
#include "sandbox/cgroup_common.h"
#include "util/strings.h"
#include "util/unique_fd.h"

namespace polyrun::sandbox {

namespace {

using namespace cgroup_internal;

class CgroupV2 final : public Cgroup {
 public:
  explicit CgroupV2(std::string dir)
      : dir_(std::move(dir)), fd_(::open(dir_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC)) {}
  ~CgroupV2() override {
    // Best effort: a destructor has no one to report to; Remove() is the checked path.
    if (!Remove()) return;
  }

  int CloneIntoFd() const override { return fd_.get(); }
  std::vector<std::string> SelfMoveFiles() const override { return {dir_ + "/cgroup.procs"}; }

  Result<void> SetLimits(const CgroupLimits& limits) override {
    if (auto r = WriteChecked(dir_, "memory.max", std::to_string(limits.memory_bytes), 4096); !r) {
      return r;
    }
    return WriteChecked(dir_, "pids.max", std::to_string(limits.pids));
  }

  Result<void> AddProcess(pid_t pid) override {
    return Write(dir_, "cgroup.procs", std::to_string(pid));
  }

  Result<CgroupUsage> Usage() override {
    CgroupUsage u;
    auto cpu = Read(dir_, "cpu.stat");
    if (!cpu) return std::unexpected(cpu.error());
    u.cpu_ns = ParseKeyedValue(*cpu, "usage_usec") * 1000;
    // memory.peak needs 5.19; before that the best we have is sampling memory.current.
    auto mem = Read(dir_, "memory.peak");
    if (!mem) mem = Read(dir_, "memory.current");
    if (!mem) return std::unexpected(mem.error());
    sampled_peak_ = std::max<uint64_t>(sampled_peak_, ToU64(*mem));
    u.memory_peak_bytes = sampled_peak_;
    auto events = Read(dir_, "memory.events");
    if (!events) return std::unexpected(events.error());
    u.oom_kills = ParseKeyedValue(*events, "oom_kill");
    return u;
  }

  void KillAll() override {
    if (Exists(dir_, "cgroup.kill")) {
      if (!Write(dir_, "cgroup.kill", "1")) KillProcs(dir_);
    } else {
      KillProcs(dir_);
    }
  }

  bool Empty() override {
    auto events = Read(dir_, "cgroup.events");
    if (!events) return ProcsEmpty(dir_);
    return ParseKeyedValue(*events, "populated") == 0;
  }

  Result<void> Remove() override {
    if (removed_) return {};
    removed_ = true;
    if (!Empty()) KillAll();
    return RemoveDir(dir_);
  }

 private:
  std::string dir_;
  UniqueFd fd_;
  uint64_t sampled_peak_ = 0;
  bool removed_ = false;
};

class CgroupV2Manager final : public CgroupManager {
 public:
  explicit CgroupV2Manager(SharedDir base) : base_(std::move(base)) {}

  Result<std::unique_ptr<Cgroup>> Create(const std::string& name,
                                         const CgroupLimits& limits) override {
    std::string dir = base_.path() + "/" + name;
    if (auto r = MakeRunDir(dir); !r) return std::unexpected(r.error());
    auto cg = std::make_unique<CgroupV2>(dir);
    if (auto r = cg->SetLimits(limits); !r) return std::unexpected(r.error());
    if (Exists(dir, "memory.swap.max")) {
      if (auto r = WriteChecked(dir, "memory.swap.max", "0"); !r) return std::unexpected(r.error());
    }
    if (auto r = WriteChecked(dir, "memory.oom.group", "1"); !r) return std::unexpected(r.error());
    return cg;
  }

  std::string Describe() const override { return "cgroup v2 (" + base_.path() + ")"; }

 private:
  SharedDir base_;
};

Result<void> EnableControllers(const std::string& dir) {
  auto have = Read(dir, "cgroup.subtree_control");
  if (!have) return std::unexpected(have.error());
  for (const char* c : {"memory", "pids"}) {
    bool on = false;
    for (const auto& word : Split(std::string(Trim(*have)), ' ')) on |= word == c;
    if (on) continue;
    if (auto r = Write(dir, "cgroup.subtree_control", std::string("+") + c); !r) {
      Error e = r.error();
      if (e.sys_errno == EBUSY) {
        e.context +=
            " (the cgroup has processes of its own; give polyrun a delegated cgroup, "
            "e.g. systemd Delegate=yes, or set sandbox.cgroup_root)";
      }
      e.code = Errc::kUnsupported;
      return std::unexpected(e);
    }
  }
  return {};
}

}  // namespace

Result<std::unique_ptr<CgroupManager>> MakeCgroupV2(const std::string& parent) {
  auto controllers = Read(parent, "cgroup.controllers");
  if (!controllers) return std::unexpected(controllers.error());
  for (const char* c : {"memory", "pids"}) {
    bool found = false;
    for (const auto& word : Split(std::string(Trim(*controllers)), ' ')) found |= word == c;
    if (!found) {
      return Fail(Errc::kUnsupported,
                  parent + ": cgroup v2 controller '" + c + "' is not available here");
    }
  }
  if (auto r = EnableControllers(parent); !r) return std::unexpected(r.error());
  auto base = SharedDir::Open(parent + "/polyrun");
  if (!base) return std::unexpected(base.error());
  if (auto r = EnableControllers(base->path()); !r) return std::unexpected(r.error());
  cgroup_internal::SweepDeadRuns(base->path());
  return std::make_unique<CgroupV2Manager>(std::move(*base));
}

}  // namespace polyrun::sandbox
