#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace polyrun {

std::string_view Trim(std::string_view s);
std::vector<std::string> Split(std::string_view s, char sep);
// Replaces every `from` in `s` with `to`; true when there was one.
bool ReplaceAll(std::string& s, std::string_view from, std::string_view to);
// True when `s` is valid UTF-8.
bool IsValidUtf8(std::string_view s);

}  // namespace polyrun
