#pragma once

#include <string>
#include <vector>

namespace polyrun::sandbox {

// One line of `polyrun doctor`: a mechanism the sandbox needs, whether it works on this host
// (probed for real, not guessed from versions), and what to do when it does not.
struct HostCheck {
  std::string name;
  bool ok = false;
  std::string detail;
  std::string fix;
};

// Probes namespaces (by cloning a child into each), seccomp, no_new_privs and cgroups.
std::vector<HostCheck> CheckHost();

}  // namespace polyrun::sandbox
