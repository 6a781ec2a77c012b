#pragma once

#include <string>
#include <vector>

#include "engine/request.h"
#include "languages/analyzer.h"

namespace polyrun::engine {

// `polyrun check` / Engine::Check: what a program is and whether it would load, without
// running it.
struct CheckRequest {
  std::string language;              // id, alias or extension for every target; empty: detect
  std::vector<RequestFile> files;    // every file the targets may import
  std::vector<std::string> targets;  // names among `files` to check; empty: all of them
};

struct CheckReport {
  std::string rejected;  // the request itself was invalid (names the field); no files then
  std::vector<languages::FileCheck> files;
};

}  // namespace polyrun::engine
