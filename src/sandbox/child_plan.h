#pragma once

#include <linux/filter.h>
#include <sys/resource.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace polyrun::sandbox {

// One step of building the sandbox's root. Paths are absolute on the host's view during setup
// (under ChildPlan::new_root). Built by the parent; executed by the child without allocating.
struct SetupStep {
  enum Kind {
    kMkdir,       // target, mode
    kTmpfs,       // target, data = mount options, flags = MS_* flags
    kBind,        // source -> target, read-only nosuid nodev, recursive
    kDeviceBind,  // source -> target (an empty file), nosuid noexec, writable, devices allowed
    kProc,        // target
    kSymlink,     // target -> source (link text)
    kFile,        // target (O_EXCL), data/size, mode
    kTouch,       // target: an empty file to bind a file onto
    kReadOnly,    // target: make this mount read-only (non-recursive)
  };
  Kind kind;
  std::string source;
  std::string target;
  std::string data;
  const char* content = nullptr;  // kFile: points into the spec (kept alive by the parent)
  size_t size = 0;
  unsigned mode = 0755;
  unsigned long flags = 0;
};

struct RlimitStep {
  int resource;
  rlimit value;
};

// Everything the cloned child needs, prepared in the parent so the child only makes syscalls.
struct ChildPlan {
  int stdin_fd = -1, stdout_fd = -1, stderr_fd = -1, status_fd = -1, sync_fd = -1;
  int frames_fd = -1;  // optional: becomes the program's fd 3
  bool clear_groups = false;
  // The program is a zygote (docs/performance.md): it keeps CAP_SYS_ADMIN, CAP_NET_ADMIN and
  // CAP_SETPCAP in the sandbox's user namespace, as ambient capabilities across its execve, and
  // `seccomp` is the fork-server profile. Its frames fd is a SOCK_SEQPACKET socket.
  bool fork_server = false;
  // The network namespace was made with the run (no NetnsPool): its loopback is still down.
  bool bring_up_loopback = false;
  uid_t inner_uid = 1000;
  gid_t inner_gid = 1000;
  std::string new_root;  // where the root tmpfs is mounted during setup
  std::vector<SetupStep> steps;
  std::vector<RlimitStep> rlimits;
  std::vector<const char*> argv;  // null-terminated
  std::vector<const char*> envp;  // null-terminated
  std::vector<const char*> collect;
  uint64_t collect_max = 0;
  sock_fprog seccomp{};
  // cgroup control files to write "0" to (join the run's cgroup ourselves); null-terminated.
  std::vector<const char*> join_cgroup_files;
  // The polyrun process's argv and environment strings ([start, end) in its address space, as
  // /proc/self/stat reports them). The init, a copy of polyrun, wipes its copies: the program
  // can read /proc/1/cmdline, and it must not see the host's command line.
  uintptr_t arg_start = 0, arg_end = 0, env_start = 0, env_end = 0;
};

// The init's report on the status pipe, followed for kExited by artifact records
// (ArtifactHeader, name bytes, data bytes).
struct InitReport {
  static constexpr uint32_t kMagic = 0x706f6c79;  // "poly"
  // kExecFailed: the sandbox was built, but the program itself could not be executed.
  enum Kind : uint32_t { kExited = 1, kSetupFailed = 2, kExecFailed = 3 };
  uint32_t magic = kMagic;
  uint32_t kind = 0;
  int32_t wait_status = 0;
  int32_t err = 0;
  char what[240] = {};
};

struct ArtifactHeader {
  uint32_t name_len;
  uint32_t reserved;
  uint64_t size;
};

// Entry point of the cloned child (PID 1 of the new PID namespace). Never returns.
[[noreturn]] void RunContainerInit(const ChildPlan& plan);

}  // namespace polyrun::sandbox
