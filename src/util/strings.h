#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace polyrun {

std::string_view Trim(std::string_view s);
std::vector<std::string> Split(std::string_view s, char sep);
// True when `s` is valid UTF-8.
bool IsValidUtf8(std::string_view s);

}  // namespace polyrun
