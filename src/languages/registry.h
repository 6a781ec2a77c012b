#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "languages/manifest.h"

namespace polyrun::languages {

// One entry of the registry: a parsed language, or the reason its folder is unusable.
struct LanguageEntry {
  std::string id;                            // folder name when the manifest could not be parsed
  std::shared_ptr<const Language> language;  // null when the manifest is invalid
  bool usable = false;
  std::string problem;  // why not usable: bad manifest, missing toolchain, …
  std::string version;  // filled by ProbeVersions()
};

// The languages found under a directory, each folder with a manifest.toml. Invalid manifests
// do not stop the others from loading; they are listed with their error.
class Registry {
 public:
  // check_patterns: see ParseManifest.
  static Result<Registry> Load(const std::string& dir, bool check_patterns = true);
  // For one-shot runs: parses only the manifest that `name` (id, alias or extension) resolves
  // to, found through an index in `cache_dir` that is rebuilt whenever any manifest's size or
  // mtime, or the set of folders, changes. Falls back to Load() when the index cannot answer.
  static Result<Registry> LoadFor(const std::string& dir, const std::string& name,
                                  const std::string& cache_dir, bool check_patterns = true);

  const std::vector<LanguageEntry>& entries() const { return entries_; }
  // By id, alias or (with a leading dot or none) extension. Case-insensitive.
  const LanguageEntry* Find(const std::string& name) const;
  const LanguageEntry* FindByExtension(const std::string& ext) const;
  // Runs each usable language's version command (cached on disk by binary path, size and
  // mtime in `cache_dir`, when not empty), marking languages whose probe fails unusable.
  void ProbeVersions(const std::string& cache_dir);
  // Version for one language, probing (cached) on demand.
  std::string VersionOf(const std::string& id, const std::string& cache_dir);
  const std::string& dir() const { return dir_; }

 private:
  static Result<LanguageEntry> LoadEntry(const std::string& dir, const std::string& folder,
                                         bool check_patterns);
  std::string dir_;
  std::vector<LanguageEntry> entries_;
};

// Size and mtime of what a language's folder provides to its recipes: its top-level files
// (manifest, scripts) and an npm install's node_modules/.package-lock.json. Changes whenever
// a recipe or a pinned npm toolchain does; part of the version and artifact cache keys.
std::string FolderStamp(const Language& lang);

// Runs a trusted host program (a toolchain's version command) with a clean environment, every
// signal at its default and none blocked, and no shell, returning its combined stdout and
// stderr. Bounded in time and output.
Result<std::string> RunHostProgram(const std::vector<std::string>& argv, int timeout_ms = 10000);

}  // namespace polyrun::languages
