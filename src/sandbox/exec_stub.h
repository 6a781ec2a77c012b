// The request a prebuilt sandbox's program, polyrun-exec (exec_stub.cc), reads on its stdin
// before it becomes the run's program (docs/performance.md, "Prebuilt sandboxes").
//
// Layout, in the host's byte order (the stub runs on the same machine):
//   u64 header size, then the header:
//     u32 argc, then argc strings; u32 envc, then envc strings; each string NUL-terminated;
//     u32 file count, then per file: its /work-relative name (NUL-terminated), u32 mode, u64 size;
//   then each file's bytes, in the header's order.
// The stub reads exactly that much; what follows on its stdin is the run's own.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "sandbox/spec.h"

namespace polyrun::sandbox {

// Where the host binds polyrun-exec in a prebuilt sandbox.
inline constexpr const char* kExecStubPath = "/polyrun/exec";

// The request for `argv`, `env` and `files`, followed by `run_stdin`, the run's own input: the one
// buffer the host writes to the stub's stdin.
inline std::string EncodeExecRequest(const std::vector<std::string>& argv,
                                     const std::vector<std::string>& env,
                                     const std::vector<SandboxFile>& files,
                                     std::string_view run_stdin) {
  std::string header;
  auto put = [&header](const auto& value) {
    header.append(reinterpret_cast<const char*>(&value), sizeof value);
  };
  auto put_strings = [&](const std::vector<std::string>& strings) {
    put(static_cast<uint32_t>(strings.size()));
    for (const auto& s : strings) header.append(s.c_str(), s.size() + 1);
  };
  put_strings(argv);
  put_strings(env);
  put(static_cast<uint32_t>(files.size()));
  size_t content = 0;
  for (const auto& f : files) {
    header.append(f.name.c_str(), f.name.size() + 1);
    put(static_cast<uint32_t>(f.executable ? 0755 : 0644));
    put(static_cast<uint64_t>(f.content.size()));
    content += f.content.size();
  }
  std::string out;
  out.reserve(sizeof(uint64_t) + header.size() + content + run_stdin.size());
  const auto size = static_cast<uint64_t>(header.size());
  out.append(reinterpret_cast<const char*>(&size), sizeof size);
  out += header;
  for (const auto& f : files) out += f.content;
  out += run_stdin;
  return out;
}

}  // namespace polyrun::sandbox
