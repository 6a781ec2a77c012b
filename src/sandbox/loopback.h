#pragma once

namespace polyrun::sandbox {

// Sets the calling thread's network namespace's "lo" up. Returns 0, or the errno of the failing
// call with *syscall naming it. Only system calls, no allocation: safe in a cloned child.
int BringUpLoopback(const char** syscall);

}  // namespace polyrun::sandbox
