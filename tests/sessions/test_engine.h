// The Engine a session test binary shares: the repo's languages, a private cache and scratch
// directory, created once per binary and removed at its end. Needs root (the sandbox).
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>

#include "engine/engine.h"

namespace polyrun::sessions_test {

class TestEngine {
 public:
  // Call from SetUpTestSuite; `prefix` names the scratch directory under /tmp.
  static void Start(const std::string& prefix) {
    if (engine()) return;
    std::string tmpl = "/tmp/" + prefix + "-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir() = tmpl;
    std::filesystem::create_directories(dir() + "/cache");
    engine::EngineConfig config;
    config.languages_dir = POLYRUN_LANGUAGES_DIR;
    config.cache_dir = dir() + "/cache";
    auto e = engine::Engine::Create(config);
    ASSERT_TRUE(e) << "this suite needs root, user namespaces and cgroups: " << e.error().message();
    engine() = std::move(*e);
  }
  // Call from TearDownTestSuite.
  static void Stop() {
    engine().reset();
    std::error_code ec;
    if (!dir().empty()) std::filesystem::remove_all(dir(), ec);
  }
  static std::unique_ptr<engine::Engine>& engine() {
    static std::unique_ptr<engine::Engine> e;
    return e;
  }
  // The scratch directory (stores, files of a test).
  static std::string& dir() {
    static std::string d;
    return d;
  }
};

}  // namespace polyrun::sessions_test
