#include "cli/source_files.h"

#include "sandbox/sandbox.h"
#include "util/files.h"

namespace polyrun::cli {

Result<std::vector<engine::RequestFile>> ReadSourceFiles(const std::vector<std::string>& paths) {
  std::vector<engine::RequestFile> files;
  files.reserve(paths.size());
  for (const auto& path : paths) {
    auto text = ReadTrustedFile(path, 64u << 20);
    if (!text) {
      Error e = text.error();
      e.context = "cannot read " + path + ": " + e.context;
      return std::unexpected(e);
    }
    std::string name =
        sandbox::ValidateRelativePath(path) ? path : path.substr(path.rfind('/') + 1);
    files.push_back({std::move(name), std::move(*text)});
  }
  return files;
}

}  // namespace polyrun::cli
