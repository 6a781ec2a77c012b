// The native API (/v1), /healthz and /metrics; the contract is docs/api.md.
#include <boost/asio/post.hpp>
#include <boost/beast/http.hpp>
#include <mutex>

#include "engine/result_json.h"
#include "server/api.h"

namespace polyrun::server {

namespace http = boost::beast::http;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto kReplace = json::error_handler_t::replace;

std::string Dump(const json& j) {
  return j.dump(-1, ' ', false, kReplace);
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string PercentDecode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size() && HexValue(s[i + 1]) >= 0 &&
               HexValue(s[i + 2]) >= 0) {
      out += static_cast<char>(HexValue(s[i + 1]) * 16 + HexValue(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// Length of the longest suffix of `s` that starts a UTF-8 sequence it does not finish.
size_t IncompleteTail(std::string_view s) {
  const size_t n = s.size();
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    const auto c = static_cast<unsigned char>(s[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: look further back
    const size_t need = (c & 0xE0) == 0xC0   ? 2
                        : (c & 0xF0) == 0xE0 ? 3
                        : (c & 0xF8) == 0xF0 ? 4
                                             : 1;
    return need > back ? back : 0;
  }
  return 0;
}

json EventJson(const engine::Event& e) {
  return engine::EventToJson(e);
}

// The result of every execution in a history page: the stored result when finished, else what
// the record knows.
json HistoryItem(const store::ExecutionRecord& r) {
  if (!r.result.empty()) {
    json j = json::parse(r.result, nullptr, false);
    if (!j.is_discarded()) return j;
  }
  return {{"id", r.id},         {"language", r.language},     {"status", r.status},
          {"labels", r.labels}, {"created_at", r.created_at}, {"finished_at", nullptr}};
}

}  // namespace

std::string WholeUtf8(std::string data, std::string& carry) {
  if (!carry.empty()) {
    data.insert(0, carry);
    carry.clear();
  }
  const size_t tail = IncompleteTail(data);
  if (tail > 0) {
    carry = data.substr(data.size() - tail);
    data.resize(data.size() - tail);
  }
  return data;
}

std::string EventText(const engine::Event& e, std::string& carry_out, std::string& carry_err) {
  if (e.kind == engine::Event::Kind::kStdout || e.kind == engine::Event::Kind::kStderr) {
    engine::Event whole = e;
    whole.data = WholeUtf8(e.data, e.kind == engine::Event::Kind::kStdout ? carry_out : carry_err);
    return Dump(EventJson(whole));
  }
  return Dump(EventJson(e));
}

std::string_view PathOf(std::string_view target) {
  return target.substr(0, target.find('?'));
}

std::map<std::string, std::string> QueryOf(std::string_view target) {
  std::map<std::string, std::string> out;
  size_t q = target.find('?');
  if (q == std::string_view::npos) return out;
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    size_t amp = rest.find('&');
    std::string_view part = rest.substr(0, amp);
    size_t eq = part.find('=');
    out[PercentDecode(part.substr(0, eq))] =
        eq == std::string_view::npos ? "" : PercentDecode(part.substr(eq + 1));
    if (amp == std::string_view::npos) break;
    rest = rest.substr(amp + 1);
  }
  return out;
}

Api::Api(const ServerOptions& o, ServerDeps& d, Metrics& m)
    : options(o), deps(d), metrics(m), languages_json([&] {
        json out = json::array();
        if (d.languages) {
          for (const auto& l : d.languages()) out.push_back(engine::ToJson(l));
        }
        return Dump(out);
      }()) {}

Api::~Api() {
  blocking.join();
}

HttpResponse Api::Error(const HttpRequest& req, unsigned status, const std::string& code,
                        const std::string& field, const std::string& message) const {
  return JsonResponse(req, status,
                      Dump({{"error", {{"code", code}, {"field", field}, {"message", message}}}}));
}

void Api::Reply(const std::shared_ptr<Exchange>& ex, const std::string& route,
                Clock::time_point start, HttpResponse response) {
  metrics.Request(route, response.result_int(),
                  std::chrono::duration<double>(Clock::now() - start).count());
  ex->Send(std::move(response));
}

std::optional<Caller> Api::Authenticate(const HttpRequest& req) const {
  if (options.keys.empty()) return Caller{};
  std::string_view token;
  auto auth = req.find(http::field::authorization);
  if (auth != req.end()) {
    std::string_view v = auth->value();
    if (v.starts_with("Bearer ")) token = v.substr(7);
  } else if (auto x = req.find("X-API-Key"); x != req.end()) {
    token = x->value();
  }
  const ApiKey* key = options.keys.Find(token);
  if (key == nullptr) return std::nullopt;
  return Caller{key->name};
}

void Api::NameFiles(engine::ExecutionRequest& request) const {
  for (auto& f : request.files) {
    if (f.name.empty() && deps.entry_name) f.name = deps.entry_name(request.language);
  }
}

std::optional<engine::RequestError> Api::CheckLanguage(engine::ExecutionRequest& request) const {
  if (!deps.languages) return std::nullopt;
  for (const auto& l : deps.languages()) {
    bool match =
        l.id == request.language ||
        std::find(l.aliases.begin(), l.aliases.end(), request.language) != l.aliases.end() ||
        std::find(l.extensions.begin(), l.extensions.end(), request.language) != l.extensions.end();
    if (!match) continue;
    if (l.usable) {
      request.language = l.id;
      return std::nullopt;
    }
    return engine::RequestError{"invalid_request", "language",
                                "language: " + l.id + " is not usable on this host: " + l.problem,
                                400};
  }
  return engine::RequestError{
      "invalid_request", "language",
      "language: unknown language \"" + request.language + "\" (GET /v1/languages lists them)",
      400};
}

Api::Admitted Api::Admit(engine::ExecutionRequest request, const Caller& caller, bool interactive) {
  Admitted out;
  if (!caller.key.empty()) {
    std::chrono::seconds retry{1};
    auto admit = options.keys.Acquire(caller.key, retry);
    if (admit != ApiKeys::Admit::kOk) {
      const bool rate = admit == ApiKeys::Admit::kRateLimited;
      metrics.Refused(rate ? "rate_limited" : "key_concurrency");
      out.status = 429;
      out.retry_after = static_cast<int>(retry.count());
      out.error = {{"error",
                    {{"code", rate ? "rate_limited" : "too_many_running"},
                     {"field", ""},
                     {"message",
                      rate ? "API key " + caller.key + ": over its rate of runs"
                           : "API key " + caller.key + ": as many runs as it may have at once"}}}};
      return out;
    }
  }
  auto admitted = deps.service.Submit(std::move(request), {caller.key, interactive});
  if (!admitted || admitted->refusal != engine::ExecutionService::Refusal::kNone) {
    if (!caller.key.empty()) options.keys.Release(caller.key);
    if (!admitted) {
      out.status = 500;
      out.error = {{"error",
                    {{"code", "internal_error"},
                     {"field", ""},
                     {"message", "store: " + admitted.error().message()}}}};
      return out;
    }
    const bool full = admitted->refusal == engine::ExecutionService::Refusal::kQueueFull;
    metrics.Refused(full ? "queue_full" : "shutting_down");
    out.status = full ? 429 : 503;
    out.retry_after = full ? 1 : 5;
    out.error = {{"error",
                  {{"code", full ? "queue_full" : "shutting_down"},
                   {"field", ""},
                   {"message", full ? "the queue is full (" +
                                          std::to_string(deps.service.options().max_queued) +
                                          " waiting); retry later"
                                    : "the server is shutting down"}}}};
    return out;
  }
  out.id = admitted->id;
  return out;
}

void Api::Finished(const engine::ExecutionResult& result, const std::string& api_key) {
  metrics.Finished(result);
  if (!api_key.empty()) options.keys.Release(api_key);
}

void Api::Handle(HttpRequest& req, const std::shared_ptr<Exchange>& ex) {
  const auto start = Clock::now();
  const std::string path(PathOf(req.target()));
  const auto method = req.method();

  if (path == "/healthz") {
    auto s = deps.service.stats();
    return Reply(ex, "/healthz", start,
                 JsonResponse(req, 200,
                              Dump({{"status", "ok"},
                                    {"store", deps.store.backend()},
                                    {"queued", s.queued},
                                    {"running", s.running}})));
  }
  auto caller = Authenticate(req);
  if (!caller) {
    auto res = Error(req, 401, "unauthorized", "Authorization",
                     "Authorization: a valid API key is required (Authorization: Bearer KEY)");
    res.set(http::field::www_authenticate, "Bearer");
    return Reply(ex, "unauthorized", start, std::move(res));
  }
  if (path.starts_with("/api/v2/")) {
    if (HandlePiston(req, ex, *caller, start)) return;
  } else if (path == "/v1/sessions" || path.starts_with("/v1/sessions/")) {
    if (HandleSessions(req, ex, *caller, start)) return;
  } else if (path == "/metrics" && method == http::verb::get) {
    auto s = deps.service.stats();
    HttpResponse res{http::status::ok, req.version()};
    res.set(http::field::content_type, "text/plain; version=0.0.4");
    res.keep_alive(req.keep_alive());
    res.body() = metrics.Render(
        s.queued, s.running,
        deps.warm_pools ? deps.warm_pools() : std::map<std::string, engine::WarmPool::Stats>{},
        deps.zygotes ? deps.zygotes() : std::map<std::string, engine::Zygotes::Stats>{},
        deps.teardown_failures ? deps.teardown_failures() : 0,
        deps.prebuilt ? deps.prebuilt() : std::map<std::string, engine::WarmPool::Stats>{});
    res.prepare_payload();
    return Reply(ex, "/metrics", start, std::move(res));
  } else if (path == "/v1/languages" && method == http::verb::get) {
    return Reply(ex, "/v1/languages", start, JsonResponse(req, 200, languages_json));
  } else if (path == "/v1/executions") {
    if (method == http::verb::post) return Executions(req, ex, *caller, start);
    if (method == http::verb::get) return History(req, ex, start);
  } else if (path == "/v1/check" && method == http::verb::post) {
    return Check(req, ex, start);
  } else if (path.starts_with("/v1/executions/")) {
    std::string rest = path.substr(std::string("/v1/executions/").size());
    std::string id = rest.substr(0, rest.find('/'));
    std::string tail = rest.size() > id.size() ? rest.substr(id.size()) : "";
    if (tail.empty() && method == http::verb::get) {
      auto r = deps.service.Get(id);
      if (!r) {
        return Reply(ex, "/v1/executions/{id}", start,
                     Error(req, 500, "internal_error", "", r.error().message()));
      }
      const std::optional<engine::ExecutionResult>& found = *r;
      if (!found) {
        return Reply(ex, "/v1/executions/{id}", start,
                     Error(req, 404, "not_found", "id", "execution " + id + " not found"));
      }
      return Reply(ex, "/v1/executions/{id}", start,
                   JsonResponse(req, 200, Dump(engine::ToJson(*found))));
    }
    if (tail == "/events" && method == http::verb::get) return Events(req, ex, id, start);
    if (tail == "/cancel" && method == http::verb::post) {
      const std::string route = "/v1/executions/{id}/cancel";
      switch (deps.service.Cancel(id)) {
        case engine::ExecutionService::CancelOutcome::kCancelling:
          return Reply(ex, route, start,
                       JsonResponse(req, 202, Dump({{"id", id}, {"status", "cancelling"}})));
        case engine::ExecutionService::CancelOutcome::kAlreadyFinished:
          return Reply(ex, route, start,
                       Error(req, 409, "already_finished", "id",
                             "execution " + id + " has already finished"));
        case engine::ExecutionService::CancelOutcome::kNotFound:
          return Reply(ex, route, start,
                       Error(req, 404, "not_found", "id", "execution " + id + " not found"));
      }
    }
  }
  const auto slashes = std::count(path.begin(), path.end(), '/');
  const bool known = path == "/v1/executions" || path == "/v1/languages" || path == "/v1/check" ||
                     path == "/metrics" ||
                     (path.starts_with("/v1/executions/") &&
                      (slashes == 3 || path.ends_with("/events") || path.ends_with("/cancel")));
  if (known) {
    return Reply(ex, "unmatched", start,
                 Error(req, 405, "method_not_allowed", "method",
                       std::string(req.method_string()) + " is not allowed on " + path));
  }
  Reply(ex, "unmatched", start,
        Error(req, 404, "not_found", "path", "no such endpoint: " + path + " (see docs/api.md)"));
}

void Api::Executions(HttpRequest& req, const std::shared_ptr<Exchange>& ex, const Caller& caller,
                     Clock::time_point start) {
  const std::string route = "/v1/executions";
  auto query = QueryOf(req.target());
  bool wait = true;
  if (auto w = query.find("wait"); w != query.end()) {
    if (w->second != "true" && w->second != "false") {
      return Reply(ex, route, start,
                   Error(req, 400, "invalid_request", "wait", "wait: expected true or false"));
    }
    wait = w->second == "true";
  }
  json body = json::parse(req.body(), nullptr, false);
  if (body.is_discarded()) {
    return Reply(ex, route, start,
                 Error(req, 400, "invalid_request", "body", "body: not valid JSON"));
  }
  auto request = engine::RequestFromJson(body, options.caps);
  if (!request) {
    return Reply(ex, route, start,
                 JsonResponse(req, static_cast<unsigned>(request.error().http_status),
                              Dump(engine::ToJson(request.error()))));
  }
  if (auto bad = request->session_id.empty() ? CheckLanguage(*request) : BindSession(*request)) {
    return Reply(
        ex, route, start,
        JsonResponse(req, static_cast<unsigned>(bad->http_status), Dump(engine::ToJson(*bad))));
  }
  NameFiles(*request);
  Admitted a = Admit(std::move(*request), caller, false);
  if (a.status != 0) {
    auto res = JsonResponse(req, a.status, Dump(a.error));
    if (a.retry_after > 0) res.set(http::field::retry_after, std::to_string(a.retry_after));
    return Reply(ex, route, start, std::move(res));
  }
  if (!wait) {
    auto res = JsonResponse(req, 202,
                            Dump({{"id", a.id},
                                  {"status", "queued"},
                                  {"result", "/v1/executions/" + a.id},
                                  {"events", "/v1/executions/" + a.id + "/events"}}));
    res.set(http::field::location, "/v1/executions/" + a.id);
    return Reply(ex, route, start, std::move(res));
  }
  ReplyWhenFinished(a.id, req, ex, route, start);
}

void Api::ReplyWhenFinished(const std::string& id, HttpRequest& req,
                            const std::shared_ptr<Exchange>& ex, const std::string& route,
                            Clock::time_point start) {
  // Fold the events into the result and answer on `finished`.
  struct Waiter {
    std::mutex mu;
    engine::ExecutionResult folded;
  };
  auto waiter = std::make_shared<Waiter>();
  auto shared_req = std::make_shared<HttpRequest>(std::move(req));
  auto sub = deps.service.Subscribe(
      id, 0, [this, waiter, ex, shared_req, route, start](const engine::Event& e) {
        std::lock_guard lock(waiter->mu);
        engine::Apply(waiter->folded, e);
        if (e.kind == engine::Event::Kind::kFinished) {
          Reply(ex, route, start,
                JsonResponse(*shared_req, 200, Dump(engine::ToJson(waiter->folded))));
        }
      });
  if (!sub) {
    return Reply(ex, route, start,
                 Error(*shared_req, 500, "internal_error", "", sub.error().message()));
  }
  ex->Hold(std::make_shared<engine::ExecutionService::Subscription>(std::move(*sub)));
}

void Api::History(HttpRequest& req, const std::shared_ptr<Exchange>& ex, Clock::time_point start) {
  const std::string route = "/v1/executions (history)";
  store::HistoryQuery q;
  for (const auto& [k, v] : QueryOf(req.target())) {
    if (k.starts_with("label.") && k.size() > 6) {
      q.labels[k.substr(6)] = v;
    } else if (k == "language") {
      q.language = v;
    } else if (k == "status") {
      if (!engine::StatusFromName(v)) {
        return Reply(
            ex, route, start,
            Error(req, 400, "invalid_request", "status", "status: unknown status \"" + v + "\""));
      }
      q.status = v;
    } else if (k == "api_key") {
      q.api_key = v;
    } else if (k == "before") {
      q.before = v;
    } else if (k == "limit") {
      char* end = nullptr;
      unsigned long n = std::strtoul(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0' || n < 1 || n > 1000) {
        return Reply(
            ex, route, start,
            Error(req, 400, "invalid_request", "limit", "limit: expected a number from 1 to 1000"));
      }
      q.limit = n;
    } else {
      return Reply(ex, route, start,
                   Error(req, 400, "invalid_request", k,
                         k + ": unknown parameter (label.KEY, language, status, api_key, "
                             "limit, before)"));
    }
  }
  auto page = deps.store.List(q);
  if (!page) {
    return Reply(ex, route, start, Error(req, 500, "internal_error", "", page.error().message()));
  }
  json items = json::array();
  for (const auto& r : page->items) items.push_back(HistoryItem(r));
  json out = {{"items", items},
              {"next_before", page->next_before.empty() ? json(nullptr) : json(page->next_before)}};
  Reply(ex, route, start, JsonResponse(req, 200, Dump(out)));
}

void Api::Events(HttpRequest& req, const std::shared_ptr<Exchange>& ex, const std::string& id,
                 Clock::time_point start) {
  const std::string route = "/v1/executions/{id}/events";
  uint64_t after = 0;
  auto query = QueryOf(req.target());
  std::string from;
  if (auto a = query.find("after"); a != query.end()) {
    from = a->second;
  } else if (auto h = req.find("Last-Event-ID"); h != req.end()) {
    from = std::string(h->value());
  }
  if (!from.empty()) {
    char* end = nullptr;
    after = std::strtoull(from.c_str(), &end, 10);
    if (*end != '\0') {
      return Reply(
          ex, route, start,
          Error(req, 400, "invalid_request", "after", "after: expected an event sequence number"));
    }
  }
  struct Stream {
    std::mutex mu;
    bool started = false;
    std::string carry_out, carry_err;
  };
  auto stream = std::make_shared<Stream>();
  HttpResponse header{http::status::ok, req.version()};
  header.set(http::field::content_type, "text/event-stream");
  header.set(http::field::cache_control, "no-cache");
  auto sub = deps.service.Subscribe(id, after, [ex, stream, header](const engine::Event& e) {
    std::lock_guard lock(stream->mu);
    if (!stream->started) {
      stream->started = true;
      ex->StartStream(header);
    }
    ex->Write("id: " + std::to_string(e.seq) +
              "\nevent: " + std::string(engine::EventKindName(e.kind)) +
              "\ndata: " + EventText(e, stream->carry_out, stream->carry_err) + "\n\n");
    if (e.kind == engine::Event::Kind::kFinished) ex->End();
  });
  if (!sub) {
    const bool missing = sub.error().code == Errc::kNotFound;
    return Reply(ex, route, start,
                 Error(req, missing ? 404 : 500, missing ? "not_found" : "internal_error", "id",
                       sub.error().message()));
  }
  metrics.Request(route, 200, std::chrono::duration<double>(Clock::now() - start).count());
  {
    // Replay past the end (after >= the last seq of a finished run): an empty, ended stream.
    std::lock_guard lock(stream->mu);
    if (!stream->started) {
      auto r = deps.service.Get(id);
      bool ended = false;
      if (r) {
        const std::optional<engine::ExecutionResult>& found = *r;
        ended = found && !found->finished_at.empty();
      }
      if (ended) {
        stream->started = true;
        ex->StartStream(header);
        ex->End();
      }
    }
  }
  ex->Hold(std::make_shared<engine::ExecutionService::Subscription>(std::move(*sub)));
}

void Api::Check(HttpRequest& req, const std::shared_ptr<Exchange>& ex, Clock::time_point start) {
  const std::string route = "/v1/check";
  json body = json::parse(req.body(), nullptr, false);
  if (body.is_discarded() || !body.is_object()) {
    return Reply(ex, route, start,
                 Error(req, 400, "invalid_request", "body", "body: expected a JSON object"));
  }
  engine::CheckRequest check;
  for (const auto& [k, v] : body.items()) {
    if (k == "language" && v.is_string()) {
      check.language = v.get<std::string>();
    } else if (k == "code" && v.is_string()) {
      check.files.push_back({"", v.get<std::string>()});
    } else if (k == "files" && v.is_array()) {
      for (size_t i = 0; i < v.size(); ++i) {
        const json& f = v[i];
        if (!f.is_object() || !f.contains("name") || !f["name"].is_string() ||
            !f.contains("content") || !f["content"].is_string()) {
          return Reply(ex, route, start,
                       Error(req, 400, "invalid_request", "files[" + std::to_string(i) + "]",
                             "files[" + std::to_string(i) +
                                 "]: expected {\"name\": string, \"content\": string}"));
        }
        check.files.push_back({f["name"], f["content"]});
      }
    } else {
      return Reply(ex, route, start,
                   Error(req, 400, "invalid_request", k,
                         k + ": unknown or mistyped field (language: string, code: string, "
                             "files: [{name, content}])"));
    }
  }
  if (check.files.empty()) {
    return Reply(ex, route, start,
                 Error(req, 400, "invalid_request", "code", "code: required (or files)"));
  }
  if (check.files.front().name.empty()) {
    if (check.language.empty()) {
      return Reply(ex, route, start,
                   Error(req, 400, "invalid_request", "language", "language: required with code"));
    }
    check.files.front().name = deps.entry_name ? deps.entry_name(check.language) : "main";
  }
  auto shared_req = std::make_shared<HttpRequest>(std::move(req));
  boost::asio::post(blocking, [this, check = std::move(check), ex, shared_req, route, start] {
    engine::CheckReport report = deps.check(check);
    if (!report.rejected.empty()) {
      return Reply(ex, route, start,
                   Error(*shared_req, 400, "invalid_request",
                         report.rejected.substr(0, report.rejected.find(':')), report.rejected));
    }
    Reply(ex, route, start, JsonResponse(*shared_req, 200, Dump(engine::ToJson(report))));
  });
}

}  // namespace polyrun::server
