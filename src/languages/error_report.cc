#include "languages/error_report.h"

#include <charconv>

#include "util/strings.h"

namespace polyrun::languages {

namespace {

int ToInt(const std::map<std::string, std::string>& m, const char* key) {
  auto it = m.find(key);
  if (it == m.end()) return 0;
  int v = 0;
  std::from_chars(it->second.data(), it->second.data() + it->second.size(), v);
  return v;
}

std::string Get(const std::map<std::string, std::string>& m, const char* key) {
  auto it = m.find(key);
  return it == m.end() ? "" : it->second;
}

int Adjust(int line, int offset) {
  return line > 0 ? std::max(1, line - offset) : line;
}

}  // namespace

std::string UserFile(const std::string& path, const std::string& work_dir) {
  if (path.empty()) return "";
  std::string prefix = work_dir + "/";
  if (path.starts_with(prefix)) return path.substr(prefix.size());
  if (path.starts_with("./")) return path.substr(2);
  if (path[0] == '/' || path[0] == '<' || path.find(':') != std::string::npos) return "";
  return path;
}

std::optional<ErrorInfo> ParseRuntimeError(const ErrorRules& rules, const std::string& stderr_text,
                                           const std::string& work_dir) {
  auto lines = Split(stderr_text, '\n');
  ErrorInfo info;
  info.type = "exception";
  std::vector<Frame> frames;  // in output order
  int first_frame = -1, last_frame = -1;
  bool found = false;
  if (rules.frame) {
    for (size_t i = 0; i < lines.size(); ++i) {
      auto m = rules.frame->Match(lines[i]);
      if (!m) continue;
      if (first_frame < 0) first_frame = static_cast<int>(i);
      last_frame = static_cast<int>(i);
      std::string file = UserFile(Get(*m, "file"), work_dir);
      if (file.empty()) continue;
      frames.push_back({file, Adjust(ToInt(*m, "line"), rules.line_offset), ToInt(*m, "column"),
                        Get(*m, "function")});
    }
  }
  if (rules.innermost_first) std::reverse(frames.begin(), frames.end());
  info.traceback = frames;
  if (!frames.empty()) {
    found = true;
    const Frame& inner = frames.back();
    info.file = inner.file;
    info.line = inner.line;
    info.column = inner.column;
  }

  if (rules.exception) {
    auto try_line = [&](size_t i) {
      auto m = rules.exception->Match(lines[i]);
      if (!m) return false;
      info.name = Get(*m, "name");
      info.message = Get(*m, "message");
      found = true;
      return true;
    };
    using P = ErrorRules::Position;
    if (rules.exception_position == P::kAfterFrames) {
      for (size_t i = last_frame < 0 ? 0 : static_cast<size_t>(last_frame) + 1; i < lines.size();
           ++i) {
        if (try_line(i)) break;
      }
    } else if (rules.exception_position == P::kBeforeFrames && first_frame >= 0) {
      for (int i = first_frame - 1; i >= 0; --i) {
        if (try_line(static_cast<size_t>(i))) break;
      }
    } else {
      for (size_t i = lines.size(); i-- > 0;) {
        if (try_line(i)) break;
      }
    }
  }

  if (rules.location) {
    std::optional<std::map<std::string, std::string>> pick;
    for (const auto& line : lines) {
      auto m = rules.location->Match(line);
      if (!m) continue;
      std::string file = UserFile(Get(*m, "file"), work_dir);
      if (!Get(*m, "file").empty() && file.empty()) continue;
      pick = m;
      if (!rules.location_last) break;
    }
    if (pick) {
      found = true;
      std::string file = UserFile(Get(*pick, "file"), work_dir);
      const int line = Adjust(ToInt(*pick, "line"), rules.line_offset);
      const int column = ToInt(*pick, "column");
      // Same place as the innermost frame: keep the frame's column if the location has none.
      const bool same = (file.empty() || file == info.file) && line == info.line;
      if (!file.empty()) info.file = file;
      info.line = line;
      if (column != 0 || !same) info.column = column;
      if (info.message.empty()) info.message = Get(*pick, "message");
      if (info.name.empty()) info.name = Get(*pick, "name");
    }
  }
  if (!found) return std::nullopt;
  if (info.name.empty()) info.name = "Error";
  return info;
}

std::vector<Diagnostic> ParseDiagnostics(const ErrorRules& rules, const std::string& output,
                                         const std::string& work_dir) {
  std::vector<Diagnostic> out;
  if (!rules.diagnostic) return out;
  for (const auto& line : Split(output, '\n')) {
    auto m = rules.diagnostic->Match(line);
    if (!m) continue;
    Diagnostic d;
    std::string file = Get(*m, "file");
    d.file = UserFile(file, work_dir);
    if (d.file.empty()) d.file = file;
    d.line = Adjust(ToInt(*m, "line"), rules.line_offset);
    d.column = ToInt(*m, "column");
    d.severity = Get(*m, "severity");
    if (d.severity.empty()) d.severity = "error";
    if (d.severity == "fatal error") d.severity = "error";
    d.message = Get(*m, "message");
    out.push_back(std::move(d));
  }
  return out;
}

}  // namespace polyrun::languages
