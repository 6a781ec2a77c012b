#pragma once

#include "engine/result.h"

namespace polyrun::cli {

// `polyrun run` exit codes (docs/cli.md). Without --json the program's own exit code passes
// through (128 + signal when a signal killed it); these mark everything else.
inline constexpr int kExitUsage = 2;          // bad flags/input, or the request was rejected
inline constexpr int kExitCompileError = 65;  // compile_error
inline constexpr int kExitInternal = 70;      // internal_error: polyrun's fault
inline constexpr int kExitOutputLimit = 123;  // output_limit
inline constexpr int kExitTimeout = 124;      // timeout (wall or CPU), as timeout(1)
inline constexpr int kExitMemoryLimit = 125;  // memory_limit
inline constexpr int kExitCancelled = 130;    // cancelled (Ctrl-C)

int ExitCodeFor(const engine::ExecutionResult& r);

}  // namespace polyrun::cli
