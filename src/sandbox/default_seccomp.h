#pragma once

#include <linux/filter.h>

#include <span>

namespace polyrun::sandbox {

// The default profile (BuildSeccompProgram({})) compiled at build time by seccomp_gen.
// seccomp_policy_test checks that it equals what the code builds at run time.
std::span<const sock_filter> DefaultSeccompFilter();

}  // namespace polyrun::sandbox
