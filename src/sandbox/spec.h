#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace polyrun::sandbox {

using Millis = std::chrono::milliseconds;

// Hard limits for one sandboxed process tree. Every field is applied; zero is not "unlimited"
// except where noted. The engine resolves these from requests, config and manifests.
struct SandboxLimits {
  Millis wall_time{5000};
  Millis cpu_time{5000};
  uint64_t memory_bytes = 256ull << 20;  // cgroup memory (RSS + page cache + tmpfs pages)
  uint64_t processes = 64;  // the program's processes and threads (pids.max, plus the tree's init)
  uint64_t stdout_bytes = 1u << 20;  // per-stream capture cap
  uint64_t stderr_bytes = 1u << 20;
  uint64_t output_bytes = 1u << 20;      // stdout + stderr together
  uint64_t file_size_bytes = 16u << 20;  // RLIMIT_FSIZE
  uint64_t open_files = 256;             // RLIMIT_NOFILE
  uint64_t stack_bytes = 8u << 20;       // RLIMIT_STACK
  uint64_t work_dir_bytes = 64u << 20;   // size of the /work tmpfs
  uint64_t tmp_bytes = 64u << 20;        // size of the /tmp tmpfs
};

// A host path made visible read-only (nosuid, nodev) inside the sandbox: at `target`, or at the
// same path when `target` is empty.
struct BindMount {
  std::string path;
  bool optional = false;  // silently skipped when the host lacks it
  std::string target;     // absolute; empty = `path`
};

// A file written into /work before the program starts.
struct SandboxFile {
  std::string name;  // relative path below /work; validated (no "..", no absolute path)
  std::string content;
  bool executable = false;
};

enum class Stream { kStdout, kStderr };

// Everything needed to run one process tree. The sandbox never interprets strings through a
// shell: argv goes to execve(2) as is.
struct SandboxSpec {
  std::vector<std::string> argv;  // argv[0] is an absolute path inside the sandbox
  std::vector<std::string> env;   // "KEY=VALUE", the whole environment
  std::vector<BindMount> binds;   // read-only binds besides the always-present /dev, /proc
  std::vector<SandboxFile> files;
  std::vector<std::string> collect;  // /work-relative files returned after the run
  uint64_t collect_max_bytes = 64u << 20;
  std::string stdin_data;                   // written to the program's stdin, then EOF
  int stdin_fd = -1;                        // if >= 0, pumped to the program instead of stdin_data
  std::vector<std::string> extra_syscalls;  // allowed on top of the default profile
  SandboxLimits limits;
  // Receives output as it arrives (before caps are checked against the stored copy).
  std::function<void(Stream, std::string_view)> on_output;
  int cancel_fd = -1;  // if >= 0 and it becomes readable, the run is cancelled

  // ---- steering a long-lived tree (sessions) ----
  // Keep stdout/stderr in the outcome, capped by the limits (one-shot runs). When false the
  // output only goes to on_output and no output cap applies: the caller enforces its own.
  bool retain_output = true;
  // Give the program a second output pipe as fd 3 (close-on-exec is the program's business);
  // its bytes go to on_frames. Before a chunk of fd 3 is delivered, every byte the program
  // wrote to fds 1 and 2 before writing that chunk has been delivered to on_output.
  bool frames_channel = false;
  std::function<void(std::string_view)> on_frames;
  // If >= 0: each byte read from it is a signal number, sent to the program's process group
  // (through the sandbox's init, which forwards SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1/2).
  int signal_fd = -1;
  // Called about every 10 ms with the tree's usage so far, on the supervising thread.
  std::function<void(uint64_t cpu_ns, uint64_t memory_peak_bytes)> on_usage;
};

enum class Termination {
  kExited,       // the program exited by itself; see exit_code
  kSignaled,     // the program was killed by a signal it did not get from us; see signal
  kWallTimeout,  // we killed it: wall-clock limit
  kCpuTimeout,   // we killed it: CPU-time limit (whole tree)
  kMemoryLimit,  // the cgroup OOM killer fired
  kOutputLimit,  // stdout/stderr exceeded a cap
  kCancelled,    // cancel_fd fired
  kSetupFailed,  // the sandbox could not be built; see setup_error
  kExecFailed,   // the sandbox was built but execve(argv[0]) failed; see setup_error
};

struct SandboxOutcome {
  Termination termination = Termination::kSetupFailed;
  int exit_code = 0;
  int signal = 0;
  std::string stdout_data;
  std::string stderr_data;
  bool stdout_truncated = false;
  bool stderr_truncated = false;
  Millis wall{0};
  Millis cpu{0};
  uint64_t memory_peak_bytes = 0;
  std::map<std::string, std::string> artifacts;
  std::string setup_error;
};

}  // namespace polyrun::sandbox
