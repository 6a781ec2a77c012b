#pragma once

#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "server/server.h"

// The server's request handlers, shared by native_api.cc (/v1, /healthz, /metrics) and
// piston_api.cc (/api/v2). Private to the server target.
namespace polyrun::server {

// The caller of one request after authentication.
struct Caller {
  std::string key;  // API key name; empty when keys are off
};

class Api {
 public:
  Api(const ServerOptions& options, ServerDeps& deps, Metrics& metrics);
  ~Api();

  void Handle(HttpRequest& req, const std::shared_ptr<Exchange>& ex);
  std::shared_ptr<WsHandler> Upgrade(const HttpRequest& req, bool loopback, HttpResponse& refusal);
  // Called once per finished execution (from the service).
  void Finished(const engine::ExecutionResult& result, const std::string& api_key);

  // ---- shared helpers (used by both APIs) ----
  // The authenticated caller, or nullopt when `authorization` holds no valid key (and keys are
  // on). The token comes from "Authorization: Bearer …" or "X-API-Key: …".
  std::optional<Caller> Authenticate(const HttpRequest& req) const;
  // Admission for one new execution: per-key limits, then the service's queue. On refusal
  // `status` is 429 or 503, and `error` the JSON error body, and `retry_after` seconds.
  struct Admitted {
    std::string id;
    unsigned status = 0;  // 0: admitted
    nlohmann::json error;
    int retry_after = 0;
  };
  Admitted Admit(engine::ExecutionRequest request, const Caller& caller, bool interactive);
  // Fills file names the request left empty with the language's entry file name.
  void NameFiles(engine::ExecutionRequest& request) const;
  // Refuses an unknown or unusable language before anything is recorded: nullopt when fine,
  // and then an alias or extension in `request.language` is replaced by the language's id (so
  // history, metrics and the result all say "python", whatever the caller wrote).
  std::optional<engine::RequestError> CheckLanguage(engine::ExecutionRequest& request) const;

  // Answers `req` with the result of execution `id` once it has finished (status 200), folding
  // its events; the exchange holds the subscription.
  void ReplyWhenFinished(const std::string& id, HttpRequest& req,
                         const std::shared_ptr<Exchange>& ex, const std::string& route,
                         std::chrono::steady_clock::time_point start);
  // For a request with a session_id: checks the session is live and sets the request's
  // language from it and its `session_id` label (so history filters by label.session_id).
  // The error and its HTTP status (404 for an unknown session) when it is not.
  std::optional<engine::RequestError> BindSession(engine::ExecutionRequest& request) const;

  // Sends `response` and records the request in the metrics under `route`.
  void Reply(const std::shared_ptr<Exchange>& ex, const std::string& route,
             std::chrono::steady_clock::time_point start, HttpResponse response);
  HttpResponse Error(const HttpRequest& req, unsigned status, const std::string& code,
                     const std::string& field, const std::string& message) const;

  // ---- /v1/sessions (session_api.cc) ----
  // True when `req` was a /v1/sessions request (answered, now or later).
  bool HandleSessions(HttpRequest& req, const std::shared_ptr<Exchange>& ex, const Caller& caller,
                      std::chrono::steady_clock::time_point start);

  // ---- /v1/ws (native_ws.cc) ----
  std::shared_ptr<WsHandler> NativeWs(const Caller& caller);

  // ---- /api/v2 (piston_api.cc) ----
  bool HandlePiston(HttpRequest& req, const std::shared_ptr<Exchange>& ex, const Caller& caller,
                    std::chrono::steady_clock::time_point start);
  std::shared_ptr<WsHandler> PistonWs(const Caller& caller);

  const ServerOptions& options;
  ServerDeps& deps;
  Metrics& metrics;
  boost::asio::thread_pool blocking{2};  // analyzer runs and other calls that take seconds
  // Session calls that wait on a driver: creation, restart, close, completion queries.
  boost::asio::thread_pool session_work{4};
  const std::string languages_json;  // GET /v1/languages: the languages never change

 private:
  void Executions(HttpRequest& req, const std::shared_ptr<Exchange>& ex, const Caller& caller,
                  std::chrono::steady_clock::time_point start);
  void History(HttpRequest& req, const std::shared_ptr<Exchange>& ex,
               std::chrono::steady_clock::time_point start);
  void Events(HttpRequest& req, const std::shared_ptr<Exchange>& ex, const std::string& id,
              std::chrono::steady_clock::time_point start);
  void Check(HttpRequest& req, const std::shared_ptr<Exchange>& ex,
             std::chrono::steady_clock::time_point start);

  // The sessions created here. Ended ones stay (the newest kKeepEnded) so that
  // GET /v1/sessions/{id} can still say how a session ended.
  static constexpr size_t kKeepEnded = 256;
  mutable std::mutex known_sessions_mu_;
  std::map<std::string, std::shared_ptr<engine::Session>> known_sessions_;
  friend class SessionRoutes;
};

// Splits `data` so that no UTF-8 sequence is cut: an incomplete sequence at its end moves to
// `carry` (and the previous carry is prepended first). Output chunks arrive cut anywhere; JSON
// text must not replace half a character with U+FFFD.
std::string WholeUtf8(std::string data, std::string& carry);

// One event as JSON text on the wire (SSE data, WebSocket message), output text made whole.
std::string EventText(const engine::Event& e, std::string& carry_out, std::string& carry_err);

// The query string's parameters (percent-decoded); `target` is the request target.
std::map<std::string, std::string> QueryOf(std::string_view target);
std::string_view PathOf(std::string_view target);

}  // namespace polyrun::server
