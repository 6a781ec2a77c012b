#pragma once

#include <string>
#include <vector>

namespace polyrun::testing {

struct ProcessResult {
  int exit_code = -1;  // 128 + signal when killed
  std::string out;
  std::string err;
};

// Runs ./build/polyrun with `args` in `cwd` (empty: inherit), feeding `stdin_data`, and
// collects its output. No shell is involved.
ProcessResult RunPolyrun(const std::vector<std::string>& args, const std::string& cwd = "",
                         const std::string& stdin_data = "");

// A fresh directory under $TMPDIR, removed by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  // Writes `content` to path()/name, creating parent directories.
  void Write(const std::string& name, const std::string& content) const;

 private:
  std::string path_;
};

}  // namespace polyrun::testing
