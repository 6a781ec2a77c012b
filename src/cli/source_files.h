#pragma once

#include <string>
#include <vector>

#include "engine/request.h"
#include "util/error.h"

namespace polyrun::cli {

// Reads the files named on the command line for a request. Each gets, inside the sandbox, the
// path as given when it is a clean relative path, else its base name. The error names the file.
Result<std::vector<engine::RequestFile>> ReadSourceFiles(const std::vector<std::string>& paths);

}  // namespace polyrun::cli
