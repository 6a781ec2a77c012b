#pragma once

#include <nlohmann/json.hpp>

#include "engine/check.h"
#include "engine/result.h"

namespace polyrun::engine {

// The wire shape of results (docs/api.md). Field names are a stable contract.
nlohmann::json ToJson(const ExecutionResult& r);
nlohmann::json ToJson(const languages::ErrorInfo& e);
nlohmann::json ToJson(const languages::Diagnostic& d);
nlohmann::json ToJson(const Usage& u);
nlohmann::json ToJson(const StageResult& s);
nlohmann::json ToJson(const CheckReport& r);
// Limits as numbers in base units (ms, bytes, counts), keyed by limit name.
nlohmann::json LimitsToJson(const languages::LimitSet& l);

languages::ErrorInfo ErrorFromJson(const nlohmann::json& j);
languages::Diagnostic DiagnosticFromJson(const nlohmann::json& j);
Usage UsageFromJson(const nlohmann::json& j);
StageResult StageFromJson(const nlohmann::json& j);
languages::LimitSet LimitsFromJson(const nlohmann::json& j);

}  // namespace polyrun::engine
