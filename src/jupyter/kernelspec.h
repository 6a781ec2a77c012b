#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "languages/manifest.h"
#include "util/error.h"

namespace polyrun::jupyter {

// How Jupyter names and highlights a language: kernel_info's language_info and the kernelspec's
// "language". Known ids get the names Jupyter's own kernels use (python → "python" with the
// ipython3 lexer, r → "R", bash → "bash" with the shell mode); any other language falls back to
// its polyrun id and first extension.
nlohmann::json LanguageInfoFor(const languages::Language& lang, const std::string& version);

// What a kernelspec says about one polyrun kernel.
struct KernelSpecInput {
  std::string polyrun_path;   // absolute path of the polyrun binary the kernel runs
  std::string languages_dir;  // passed as --languages-dir when not empty
  // Limit flags for `polyrun kernel run`, without dashes: {"memory", "512M"}.
  std::vector<std::pair<std::string, std::string>> limit_flags;
};

// "polyrun-<id>": the kernel's name (its folder under kernels/).
std::string KernelName(const languages::Language& lang);

// The kernel.json: argv runs `polyrun [--languages-dir D] kernel run --language <id> -f
// {connection_file} [--<limit> V]…`; display_name "<Name> (polyrun sandbox)"; the Jupyter
// language name; interrupt_mode "signal" (Jupyter sends SIGINT, which interrupts the cell).
nlohmann::json KernelSpecJson(const languages::Language& lang, const KernelSpecInput& input);

// Writes <kernels_dir>/polyrun-<id>/kernel.json (creating the folders) and returns the folder.
Result<std::string> WriteKernelSpec(const std::string& kernels_dir, const languages::Language& lang,
                                    const KernelSpecInput& input);

}  // namespace polyrun::jupyter
