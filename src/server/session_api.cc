// The sessions API (/v1/sessions): create, list, execute in, interrupt, restart, delete and
// query live sessions; the contract is docs/api.md ("Sessions").
#include <boost/asio/post.hpp>
#include <boost/beast/http.hpp>

#include "engine/result_json.h"
#include "server/api.h"

namespace polyrun::server {

namespace http = boost::beast::http;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto kReplace = json::error_handler_t::replace;
// How long a completion query waits for a busy session before answering 409 session_busy.
constexpr std::chrono::milliseconds kQueryTimeout{5000};

std::string Dump(const json& j) {
  return j.dump(-1, ' ', false, kReplace);
}

// The field an engine message names ("limits.memory: …" → "limits.memory"); "" when it starts
// with no field.
std::string FieldOf(const std::string& message) {
  const size_t colon = message.find(':');
  if (colon == std::string::npos || colon == 0) return "";
  const std::string head = message.substr(0, colon);
  const bool plain = std::all_of(head.begin(), head.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '[' ||
           c == ']';
  });
  return plain ? head : "";
}

}  // namespace

// The handlers of /v1/sessions; a friend of Api for the session labels.
class SessionRoutes {
 public:
  SessionRoutes(Api& api, const Caller& caller, Clock::time_point start)
      : api_(api), caller_(caller), start_(start) {}

  void Route(HttpRequest& req, const std::shared_ptr<Exchange>& ex) {
    const std::string path(PathOf(req.target()));
    const auto method = req.method();
    if (path == "/v1/sessions") {
      if (method == http::verb::post) return Create(req, ex);
      if (method == http::verb::get) return List(req, ex);
      return NotAllowed(req, ex, path);
    }
    const std::string rest = path.substr(std::string("/v1/sessions/").size());
    const std::string id = rest.substr(0, rest.find('/'));
    const std::string tail = rest.substr(id.size());
    if (id.empty()) return NotFound(req, ex, path);
    if (tail.empty()) {
      if (method == http::verb::get) return Get(req, ex, id);
      if (method == http::verb::delete_) return Delete(req, ex, id);
      return NotAllowed(req, ex, path);
    }
    static const std::vector<std::string> kActions = {"/execute",  "/interrupt",   "/restart",
                                                      "/complete", "/is_complete", "/inspect"};
    if (std::find(kActions.begin(), kActions.end(), tail) == kActions.end()) {
      return NotFound(req, ex, path);
    }
    if (method != http::verb::post) return NotAllowed(req, ex, path);
    if (tail == "/execute") return Execute(req, ex, id);
    if (tail == "/interrupt") return Interrupt(req, ex, id);
    if (tail == "/restart") return Restart(req, ex, id);
    Query(req, ex, id, tail.substr(1));
  }

 private:
  using Work = std::function<HttpResponse(const HttpRequest&)>;

  static json Object(const engine::Session::Info& i) {
    return {{"id", i.id},
            {"language", i.language},
            {"version", i.version},
            {"state", engine::SessionStateName(i.state)},
            {"created_at", i.created_at},
            {"last_active_at", i.last_active_at},
            {"executions", i.executions},
            {"restarts", i.restarts},
            {"memory_bytes", i.memory_bytes},
            {"limits", engine::LimitsToJson(i.limits)},
            {"labels", i.labels},
            {"ended_reason", i.state == engine::Session::State::kDead && !i.ended_reason.empty()
                                 ? json(i.ended_reason)
                                 : json(nullptr)}};
  }

  void Send(const HttpRequest& req, const std::shared_ptr<Exchange>& ex, const std::string& route,
            unsigned status, const json& body) {
    api_.Reply(ex, route, start_, JsonResponse(req, status, Dump(body)));
  }
  void Fail(const HttpRequest& req, const std::shared_ptr<Exchange>& ex, const std::string& route,
            unsigned status, const std::string& code, const std::string& field,
            const std::string& message) {
    api_.Reply(ex, route, start_, api_.Error(req, status, code, field, message));
  }
  void NotFound(const HttpRequest& req, const std::shared_ptr<Exchange>& ex,
                const std::string& path) {
    Fail(req, ex, "unmatched", 404, "not_found", "path",
         "no such endpoint: " + path + " (see docs/api.md)");
  }
  void NotAllowed(const HttpRequest& req, const std::shared_ptr<Exchange>& ex,
                  const std::string& path) {
    Fail(req, ex, "unmatched", 405, "method_not_allowed", "method",
         std::string(req.method_string()) + " is not allowed on " + path);
  }
  void NoSession(const HttpRequest& req, const std::shared_ptr<Exchange>& ex,
                 const std::string& route, const std::string& id) {
    Fail(req, ex, route, 404, "not_found", "id", "no live session " + id);
  }

  // Remembers a new session; forgets the oldest ended ones beyond Api::kKeepEnded.
  static void Remember(Api& api, const std::shared_ptr<engine::Session>& session) {
    std::lock_guard lock(api.known_sessions_mu_);
    api.known_sessions_[session->id()] = session;
    std::vector<std::string> ended;  // oldest first: ids are time-ordered
    for (const auto& [id, known] : api.known_sessions_) {
      if (known->info().state == engine::Session::State::kDead) ended.push_back(id);
    }
    for (size_t i = 0; i + Api::kKeepEnded < ended.size(); ++i) {
      api.known_sessions_.erase(ended[i]);
    }
  }

  // The body as a JSON object, or nullopt after answering 400.
  std::optional<json> Body(const HttpRequest& req, const std::shared_ptr<Exchange>& ex,
                           const std::string& route) {
    json body = req.body().empty() ? json::object() : json::parse(req.body(), nullptr, false);
    if (body.is_discarded() || !body.is_object()) {
      Fail(req, ex, route, 400, "invalid_request", "body", "body: expected a JSON object");
      return std::nullopt;
    }
    return body;
  }

  // Runs `work` on the session pool (it waits on a driver) and sends its response.
  void Later(HttpRequest& req, const std::shared_ptr<Exchange>& ex, const std::string& route,
             Work work) {
    auto shared_req = std::make_shared<HttpRequest>(std::move(req));
    boost::asio::post(api_.session_work,
                      [api = &api_, ex, route, start = start_, shared_req, work = std::move(work)] {
                        api->Reply(ex, route, start, work(*shared_req));
                      });
  }

  void Create(HttpRequest& req, const std::shared_ptr<Exchange>& ex) {
    const std::string route = "/v1/sessions";
    auto body = Body(req, ex, route);
    if (!body) return;
    auto parsed = engine::ParseSessionRequest(*body, api_.options.caps);
    if (!parsed) {
      return Send(req, ex, route, static_cast<unsigned>(parsed.error().http_status),
                  engine::ToJson(parsed.error()));
    }
    // The language's id in the session (not an alias), and the same refusal as a run's.
    engine::ExecutionRequest probe;
    probe.language = parsed->request.language;
    if (auto bad = api_.CheckLanguage(probe))
      return Send(req, ex, route, 400, engine::ToJson(*bad));
    parsed->request.language = probe.language;
    Later(req, ex, route,
          [this_api = &api_, create = std::move(*parsed),
           key = caller_.key](const HttpRequest& r) -> HttpResponse {
            auto made = this_api->deps.sessions->Create(create.request, create.exclusive, key);
            if (!made) {
              const Error& e = made.error();
              const std::string message = e.message();
              if (e.code == Errc::kConflict) {
                return this_api->Error(r, 409, "session_conflict", "exclusive", message);
              }
              if (e.code == Errc::kBusy || e.code == Errc::kUnavailable) {
                const bool stopping = e.code == Errc::kUnavailable;
                this_api->metrics.Refused(stopping ? "shutting_down" : "too_many_sessions");
                auto res = this_api->Error(r, 503, stopping ? "shutting_down" : "too_many_sessions",
                                           "", message);
                res.set(http::field::retry_after, stopping ? "5" : "10");
                return res;
              }
              if (e.code == Errc::kInvalidArgument || e.code == Errc::kNotFound) {
                return this_api->Error(r, 400, "invalid_request", FieldOf(message), message);
              }
              return this_api->Error(r, 500, "internal_error", "",
                                     "session: the driver did not start: " + message);
            }
            const std::shared_ptr<engine::Session>& session = *made;
            Remember(*this_api, session);
            auto res = JsonResponse(r, 201, Dump(Object(session->info())));
            res.set(http::field::location, "/v1/sessions/" + session->id());
            return res;
          });
  }

  void List(const HttpRequest& req, const std::shared_ptr<Exchange>& ex) {
    std::vector<engine::Session::Info> all = api_.deps.sessions->List();
    std::sort(all.begin(), all.end(),
              [](const auto& a, const auto& b) { return a.created_at < b.created_at; });
    json items = json::array();
    for (const auto& i : all) items.push_back(Object(i));
    Send(req, ex, "/v1/sessions (list)", 200, {{"sessions", items}});
  }

  void Get(const HttpRequest& req, const std::shared_ptr<Exchange>& ex, const std::string& id) {
    const std::string route = "/v1/sessions/{id}";
    auto session = api_.deps.sessions->Find(id);
    if (!session) {
      // An ended session is still known for a while: its object says how it ended.
      std::lock_guard lock(api_.known_sessions_mu_);
      if (auto it = api_.known_sessions_.find(id); it != api_.known_sessions_.end()) {
        session = it->second;
      }
    }
    if (!session) {
      return Fail(req, ex, route, 404, "not_found", "id", "session " + id + " not found");
    }
    Send(req, ex, route, 200, Object(session->info()));
  }

  void Delete(HttpRequest& req, const std::shared_ptr<Exchange>& ex, const std::string& id) {
    const std::string route = "/v1/sessions/{id} (delete)";
    auto session = api_.deps.sessions->Find(id);
    if (!session) return NoSession(req, ex, route, id);
    Later(req, ex, route, [this_api = &api_, session, id](const HttpRequest& r) -> HttpResponse {
      // Through the manager, so the session's record ends `ok` (closed on request).
      if (auto closed = this_api->deps.sessions->Close(id, "deleted by request"); !closed) {
        return this_api->Error(r, 404, "not_found", "id", "session " + id + " not found");
      }
      return JsonResponse(r, 200, Dump(Object(session->info())));
    });
  }

  void Execute(HttpRequest& req, const std::shared_ptr<Exchange>& ex, const std::string& id) {
    const std::string route = "/v1/sessions/{id}/execute";
    auto query = QueryOf(req.target());
    bool wait = true;
    if (auto w = query.find("wait"); w != query.end()) {
      if (w->second != "true" && w->second != "false") {
        return Fail(req, ex, route, 400, "invalid_request", "wait", "wait: expected true or false");
      }
      wait = w->second == "true";
    }
    auto session = api_.deps.sessions->Find(id);
    if (!session) return NoSession(req, ex, route, id);
    auto body = Body(req, ex, route);
    if (!body) return;
    auto request = engine::SessionExecutionFromJson(*body, id, api_.options.caps);
    if (!request) {
      return Send(req, ex, route, static_cast<unsigned>(request.error().http_status),
                  engine::ToJson(request.error()));
    }
    // Refused here rather than recorded as a `rejected` execution: the caller's mistake.
    if (auto limits = session->ExecutionLimits(request->limits); !limits) {
      const std::string message = limits.error().message();
      return Fail(req, ex, route, 400, "invalid_request", FieldOf(message), message);
    }
    if (auto bad = api_.BindSession(*request)) {
      return Send(req, ex, route, static_cast<unsigned>(bad->http_status), engine::ToJson(*bad));
    }
    Api::Admitted a = api_.Admit(std::move(*request), caller_, false);
    if (a.status != 0) {
      auto res = JsonResponse(req, a.status, Dump(a.error));
      if (a.retry_after > 0) res.set(http::field::retry_after, std::to_string(a.retry_after));
      return api_.Reply(ex, route, start_, std::move(res));
    }
    if (!wait) {
      auto res = JsonResponse(req, 202,
                              Dump({{"id", a.id},
                                    {"session_id", id},
                                    {"status", "queued"},
                                    {"result", "/v1/executions/" + a.id},
                                    {"events", "/v1/executions/" + a.id + "/events"}}));
      res.set(http::field::location, "/v1/executions/" + a.id);
      return api_.Reply(ex, route, start_, std::move(res));
    }
    api_.ReplyWhenFinished(a.id, req, ex, route, start_);
  }

  void Interrupt(const HttpRequest& req, const std::shared_ptr<Exchange>& ex,
                 const std::string& id) {
    const std::string route = "/v1/sessions/{id}/interrupt";
    auto session = api_.deps.sessions->Find(id);
    if (!session) return NoSession(req, ex, route, id);
    if (auto done = session->Interrupt(); !done) {
      return Fail(req, ex, route, 409, "session_idle", "id", done.error().message());
    }
    Send(req, ex, route, 202, {{"interrupted", true}});
  }

  void Restart(HttpRequest& req, const std::shared_ptr<Exchange>& ex, const std::string& id) {
    const std::string route = "/v1/sessions/{id}/restart";
    auto session = api_.deps.sessions->Find(id);
    if (!session) return NoSession(req, ex, route, id);
    Later(req, ex, route, [this_api = &api_, session](const HttpRequest& r) -> HttpResponse {
      if (auto restarted = session->Restart("restarted by request"); !restarted) {
        const std::string message = restarted.error().message();
        if (restarted.error().code == Errc::kInvalidArgument) {
          return this_api->Error(r, 404, "not_found", "id", message);
        }
        return this_api->Error(r, 500, "internal_error", "",
                               "session: the driver did not restart: " + message);
      }
      return JsonResponse(r, 200, Dump(Object(session->info())));
    });
  }

  // complete, is_complete, inspect: the driver's reply without its frame type.
  void Query(HttpRequest& req, const std::shared_ptr<Exchange>& ex, const std::string& id,
             const std::string& type) {
    const std::string route = "/v1/sessions/{id}/" + type;
    auto session = api_.deps.sessions->Find(id);
    if (!session) return NoSession(req, ex, route, id);
    auto body = Body(req, ex, route);
    if (!body) return;
    const bool cursor = type != "is_complete";
    for (const auto& [key, value] : body->items()) {
      if (key != "code" && (key != "cursor_pos" || !cursor)) {
        return Fail(req, ex, route, 400, "invalid_request", key,
                    key + ": unknown field (known: code" + (cursor ? ", cursor_pos" : "") + ")");
      }
    }
    if (!body->contains("code") || !(*body)["code"].is_string()) {
      return Fail(req, ex, route, 400, "invalid_request", "code", "code: required, a string");
    }
    json command = {{"type", type}, {"code", (*body)["code"]}};
    if (cursor) {
      const std::string& code = (*body)["code"].get_ref<const std::string&>();
      // Code points, as the drivers count them; the default is the end of the code.
      const auto length = static_cast<uint64_t>(std::count_if(code.begin(), code.end(), [](char c) {
        return (static_cast<unsigned char>(c) & 0xC0) != 0x80;
      }));
      uint64_t pos = length;
      if (body->contains("cursor_pos")) {
        const json& p = (*body)["cursor_pos"];
        if (!p.is_number_unsigned() || p.get<uint64_t>() > length) {
          return Fail(req, ex, route, 400, "invalid_request", "cursor_pos",
                      "cursor_pos: expected a whole number from 0 to the code's length in "
                      "characters (" +
                          std::to_string(length) + ")");
        }
        pos = p.get<uint64_t>();
      }
      command["cursor_pos"] = pos;
    }
    Later(req, ex, route,
          [this_api = &api_, session, command](const HttpRequest& r) -> HttpResponse {
            auto reply = session->Query(command, kQueryTimeout);
            if (!reply) {
              const Error& e = reply.error();
              if (e.code == Errc::kBusy) {
                return this_api->Error(r, 409, "session_busy", "id", e.message());
              }
              if (e.code == Errc::kTimeout) {
                return this_api->Error(r, 504, "driver_timeout", "", e.message());
              }
              return this_api->Error(r, 409, "session_unavailable", "id", e.message());
            }
            json out = *reply;
            out.erase("type");
            return JsonResponse(r, 200, Dump(out));
          });
  }

  Api& api_;
  Caller caller_;
  Clock::time_point start_;
};

bool Api::HandleSessions(HttpRequest& req, const std::shared_ptr<Exchange>& ex,
                         const Caller& caller, Clock::time_point start) {
  if (deps.sessions == nullptr) {
    Reply(ex, "unmatched", start,
          Error(req, 404, "not_found", "path", "sessions are not enabled on this server"));
    return true;
  }
  SessionRoutes(*this, caller, start).Route(req, ex);
  return true;
}

std::optional<engine::RequestError> Api::BindSession(engine::ExecutionRequest& request) const {
  auto session = deps.sessions == nullptr ? nullptr : deps.sessions->Find(request.session_id);
  if (!session) {
    return engine::RequestError{"not_found", "session_id",
                                "session_id: no live session " + request.session_id, 404};
  }
  if (!request.language.empty()) {
    engine::ExecutionRequest probe;
    probe.language = request.language;
    if (CheckLanguage(probe) || probe.language != session->language()) {
      return engine::RequestError{"invalid_request", "language",
                                  "language: session " + request.session_id + " runs " +
                                      session->language() + ", not " + request.language,
                                  400};
    }
  }
  request.language = session->language();
  request.labels["session_id"] = request.session_id;
  return std::nullopt;
}

}  // namespace polyrun::server
