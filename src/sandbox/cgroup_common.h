#pragma once

#include <string>

#include "util/error.h"
#include "util/unique_fd.h"

namespace polyrun::sandbox::cgroup_internal {

// Writes `value` to dir/file and reads it back; a mismatch (after page rounding for memory) is
// kLimitUnavailable naming the file.
Result<void> WriteChecked(const std::string& dir, const std::string& file, const std::string& value,
                          uint64_t round_to = 0);
Result<std::string> Read(const std::string& dir, const std::string& file);
Result<void> Write(const std::string& dir, const std::string& file, const std::string& value);
bool Exists(const std::string& dir, const std::string& file);
// mkdir that tolerates EEXIST (the parents polyrun shares with other polyrun processes).
Result<void> MakeDir(const std::string& path);
// The directory a manager makes its runs in (`.../polyrun`), which every polyrun process in the
// same cgroup shares: made when missing, and removed by the last process that used it, so that
// nothing of polyrun is left in a cgroup it ran in (a supervisor's job cgroup could not be removed
// while it holds a child). Each process holds a shared flock(2) on the directory for as long as it
// may make runs in it. The one that ends and can take the lock exclusively is the last, and
// removes it: rmdir refuses a directory that still holds cgroups (an ended run the graveyard
// could not remove stays, and with it the directory). A process that got its lock on a directory
// removed meanwhile makes it again.
class SharedDir {
 public:
  static Result<SharedDir> Open(const std::string& path);
  SharedDir(SharedDir&&) noexcept = default;
  SharedDir& operator=(SharedDir&&) noexcept = default;
  SharedDir(const SharedDir&) = delete;
  SharedDir& operator=(const SharedDir&) = delete;
  ~SharedDir();
  const std::string& path() const { return path_; }

 private:
  SharedDir(std::string path, UniqueFd fd) : path_(std::move(path)), fd_(std::move(fd)) {}
  std::string path_;
  UniqueFd fd_;  // holds the shared lock
};

// mkdir of a run's own directory: one that exists already is kConflict, never reused. It was left
// by a process that died without removing it, and may still hold that run's limits or processes.
Result<void> MakeRunDir(const std::string& path);
// Tests stand in for the kernel, which fills a new cgroup directory with its control files.
void SetRunDirHookForTesting(void (*made)(const std::string& dir));
// Removes the empty run directories ("run-<pid>-<n>") in `parent` whose creating process has
// ended: those a killed or crashed polyrun left. Skips this process's own and any a live process
// (of this PID namespace) owns; a directory that still holds processes stays (rmdir refuses it).
void SweepDeadRuns(const std::string& parent);
// Kills every pid listed in dir/cgroup.procs.
void KillProcs(const std::string& dir);
bool ProcsEmpty(const std::string& dir);
// rmdir with a bounded retry while the kernel finishes tearing down exiting tasks.
Result<void> RemoveDir(const std::string& dir);

}  // namespace polyrun::sandbox::cgroup_internal

namespace polyrun::sandbox::cgroup_internal {
// Leading decimal integer of a control file's content; 0 when there is none.
uint64_t ToU64(std::string_view text);
}  // namespace polyrun::sandbox::cgroup_internal
