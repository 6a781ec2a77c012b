#pragma once

#include <sys/types.h>

#include <atomic>
#include <memory>

#include "sandbox/cgroup.h"
#include "sandbox/spec.h"
#include "util/error.h"

namespace polyrun::sandbox {

struct SandboxConfig {
  std::shared_ptr<CgroupManager> cgroups;  // required: runs are refused without cgroups
  // Host ids the sandbox's single inner uid/gid (1000) maps to. As root, defaults to
  // nobody/nogroup; as an unprivileged user, to the caller's own ids.
  uid_t host_uid = static_cast<uid_t>(-1);
  gid_t host_gid = static_cast<gid_t>(-1);
  // Where the sandbox's root tmpfs may be staged inside the new mount namespace (not visible
  // on the host): per run, the first of these directories that holds no bind source (a checkout
  // under /tmp must still be bindable). Those missing on the host are dropped by Create.
  std::vector<std::string> staging_dirs = {"/tmp", "/mnt", "/srv", "/media"};
};

// Runs process trees under every guarantee of DESIGN.md §6. Thread-safe: Run() may be called
// from many threads at once; each call owns its own namespaces and cgroup.
class Sandbox {
 public:
  static Result<std::unique_ptr<Sandbox>> Create(SandboxConfig config);

  // Blocks until the tree is gone. An error means the host side failed (the run did not
  // happen, or its limits could not be guaranteed); anything the program did is an outcome.
  Result<SandboxOutcome> Run(const SandboxSpec& spec);

  const SandboxConfig& config() const { return config_; }

 private:
  explicit Sandbox(SandboxConfig config) : config_(std::move(config)) {}
  SandboxConfig config_;
  std::atomic<uint64_t> counter_{0};
};

// Validates a /work-relative file name from a request: non-empty, relative, no "." or ".."
// components, no NUL, at most 255 bytes per component and 4096 in total.
Result<void> ValidateRelativePath(const std::string& name);

}  // namespace polyrun::sandbox
