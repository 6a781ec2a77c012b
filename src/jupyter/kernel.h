#pragma once

#include <string>

#include "engine/engine.h"
#include "languages/limits.h"
#include "util/error.h"

namespace polyrun::jupyter {

struct KernelOptions {
  std::string language;         // id, alias or extension
  std::string connection_file;  // Jupyter's connection file (-f)
  // The session's limits: per cell (wall_time, cpu_time, output) and for the whole kernel
  // (memory, processes, disk, …); unset ones take the engine's defaults.
  languages::LimitSet limits;
};

// Call first in a kernel process, before any thread exists: blocks SIGINT so that every thread
// created later inherits the block; RunKernel takes it from a signalfd.
void BlockInterruptsForKernel();

// Serves one Jupyter kernel over ZeroMQ (xeus) until Jupyter shuts it down: one polyrun
// session of `options.language`, in the sandbox, hosts every cell. SIGINT to the process
// interrupts the running cell (kernel.json's interrupt_mode "signal"). Fails when the
// connection file or the session cannot be set up.
Result<void> RunKernel(engine::Engine& engine, const KernelOptions& options);

}  // namespace polyrun::jupyter
