// The Piston-compatible API: GET runtimes, POST execute and the WebSocket connect, under both
// /api/v2/… (a self-hosted Piston) and /api/v2/piston/… (the public instance's prefix, which
// clients such as piston-client use against emkc.org). Wire shapes, the status letters and the
// close codes are piston.h's; this file adds the sockets, admission and the event plumbing.
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/http.hpp>
#include <csignal>
#include <map>
#include <mutex>

#include "server/api.h"
#include "server/piston.h"

namespace polyrun::server {

namespace http = boost::beast::http;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto kReplace = json::error_handler_t::replace;

std::string Dump(const json& j) {
  return j.dump(-1, ' ', false, kReplace);
}

// Every Piston error body is {"message": …}.
HttpResponse Message(const HttpRequest& req, unsigned status, const std::string& message) {
  return JsonResponse(req, status, Dump({{"message", message}}));
}

// The route below either prefix ("/execute"), or empty when `path` has neither.
std::string_view PistonRoute(std::string_view path) {
  for (std::string_view prefix : {"/api/v2/piston/", "/api/v2/"}) {
    if (path.starts_with(prefix)) return path.substr(prefix.size() - 1);
  }
  return {};
}

// Every language the server knows; none when it was given no list.
const std::vector<engine::LanguageInfo>& LanguagesOf(const ServerDeps& deps) {
  static const std::vector<engine::LanguageInfo> kNone;
  return deps.languages ? deps.languages() : kNone;
}

// The language `name` names as CheckLanguage matches it (id, alias or extension).
const engine::LanguageInfo* FindLanguage(const std::vector<engine::LanguageInfo>& languages,
                                         const std::string& name) {
  for (const auto& l : languages) {
    auto named = [&](const std::vector<std::string>& v) {
      return std::find(v.begin(), v.end(), name) != v.end();
    };
    if (l.id == name || named(l.aliases) || named(l.extensions)) return &l;
  }
  return nullptr;
}

// Piston lists every name a runtime answers to as an alias; ours also answers to its file
// extensions, so they are listed too (once, and never the id itself).
std::vector<PistonRuntime> Runtimes(const std::vector<engine::LanguageInfo>& languages) {
  std::vector<PistonRuntime> out;
  for (const auto& l : languages) {
    if (!l.usable) continue;
    PistonRuntime rt{l.id, l.version, {}};
    for (const auto* names : {&l.aliases, &l.extensions}) {
      for (const auto& n : *names) {
        if (n != l.id && std::find(rt.aliases.begin(), rt.aliases.end(), n) == rt.aliases.end())
          rt.aliases.push_back(n);
      }
    }
    out.push_back(std::move(rt));
  }
  return out;
}

// The message of an Admit refusal (its body is the native {"error": {…}} shape).
std::string RefusalMessage(const Api::Admitted& a) {
  const json& e = a.error;
  if (e.is_object() && e.contains("error") && e["error"].is_object() &&
      e["error"].contains("message") && e["error"]["message"].is_string())
    return e["error"]["message"].get<std::string>();
  return "the execution was refused (HTTP " + std::to_string(a.status) + ")";
}

// Signals whose default action neither terminates nor stops a process: a program without a
// handler would not notice them, so they are not worth ending its run.
bool IgnoredByDefault(int sig) {
  return sig == SIGCHLD || sig == SIGCONT || sig == SIGURG || sig == SIGWINCH;
}

// One /api/v2/connect socket: a PistonSession fed by the client's messages, the init deadline
// and the execution's events, serialised by mu_.
//
// Lock order: the execution's lock (held while the service calls OnEvent) before mu_. So mu_ is
// never held while calling into the service (Admit, Subscribe, WriteStdin, Cancel) or while
// destroying a Subscription. Every message and the close go out under mu_ or after the session
// has closed, so they reach the wire in the order the session produced them.
class PistonWsHandler : public WsHandler, public std::enable_shared_from_this<PistonWsHandler> {
 public:
  PistonWsHandler(Api& api, Caller caller)
      : api_(api), caller_(std::move(caller)), session_(api.options.caps), timer_(api.blocking) {}

  void OnOpen(std::shared_ptr<WsConnection> conn) override {
    {
      std::lock_guard lock(mu_);
      conn_ = std::move(conn);
    }
    // The timer runs on the API's worker pool: the connection offers no executor of its own.
    // It holds the handler weakly, and is cancelled once an init arrives or the socket closes,
    // so a pending deadline keeps neither the handler nor the pool's shutdown waiting.
    timer_.expires_after(kPistonInitDeadline);
    timer_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
      if (ec) return;
      if (auto self = weak.lock()) {
        std::lock_guard lock(self->mu_);
        self->Emit(self->session_.OnInitDeadline());
      }
    });
  }

  void OnMessage(std::string text) override {
    std::unique_lock lock(mu_);
    PistonStep step = session_.OnMessage(text);
    // The close comes after the step's actions (PistonStep's order).
    std::optional<PistonClose> close = std::move(step.close);
    step.close.reset();
    Emit(step);
    const std::string id = id_;
    lock.unlock();

    if (step.start) {
      timer_.cancel();
      Start(std::move(*step.start));
    }
    if (step.stdin_data && !id.empty()) WriteStdin(id, *step.stdin_data);
    if (step.signal && !id.empty() && !IgnoredByDefault(*step.signal)) {
      // The engine cannot deliver a signal into the sandbox, only end the run: every signal
      // that would end or stop an unprepared program cancels it (it finishes `cancelled`,
      // reported as killed by SIGKILL).
      api_.deps.service.Cancel(id);
    }
    if (close) {
      lock.lock();
      CloseWith(*close);
    }
  }

  void OnClose() override {
    timer_.cancel();
    std::string id;
    std::shared_ptr<engine::ExecutionService::Subscription> subscription;
    {
      std::lock_guard lock(mu_);
      id = id_;
      subscription.swap(subscription_);
      conn_.reset();
    }
    // As in Piston, a job ends with its socket: nobody is left to feed or read it. A finished
    // one answers "already finished", which is fine.
    if (!id.empty()) api_.deps.service.Cancel(id);
    subscription.reset();  // unlocked: its destructor takes the execution's lock
  }

 private:
  // Sends the step's messages, then closes when it says so. mu_ held.
  void Emit(const PistonStep& step) {
    if (!conn_) return;
    for (const auto& m : step.send) conn_->Send(Dump(m));
    if (step.close) CloseWith(*step.close);
  }

  void CloseWith(const PistonClose& close) {  // mu_ held
    if (conn_) conn_->Close(static_cast<uint16_t>(close.code), close.reason);
  }

  // The session could not start its execution (or lost it): an error message and close 4002.
  void Fail(const std::string& message) {
    std::lock_guard lock(mu_);
    Emit(session_.Fail(message));
  }

  void Start(engine::ExecutionRequest request) {
    const engine::LanguageInfo* language = FindLanguage(LanguagesOf(api_.deps), request.language);
    if (auto bad = api_.CheckLanguage(request)) {
      return Fail(language != nullptr
                      ? bad->message
                      : request.language + "-" + (request.version.empty() ? "*" : request.version) +
                            " runtime is unknown");
    }
    api_.NameFiles(request);
    Api::Admitted admitted = api_.Admit(std::move(request), caller_, /*interactive=*/true);
    if (admitted.status != 0) {
      std::string message = RefusalMessage(admitted);
      if (admitted.retry_after > 0)
        message += " (retry after " + std::to_string(admitted.retry_after) + " s)";
      return Fail(message);
    }
    {
      std::lock_guard lock(mu_);
      id_ = admitted.id;
      if (language != nullptr) language_id_ = language->id;
    }
    auto sub = api_.deps.service.Subscribe(
        admitted.id, 0, [self = shared_from_this()](const engine::Event& e) { self->OnEvent(e); });
    if (!sub) {
      api_.deps.service.Cancel(admitted.id);
      return Fail(sub.error().message());
    }
    auto held = std::make_shared<engine::ExecutionService::Subscription>(std::move(*sub));
    std::lock_guard lock(mu_);
    held.swap(subscription_);
  }

  void WriteStdin(const std::string& id, const std::string& data) {
    auto written = api_.deps.service.WriteStdin(id, data);
    // kNotFound: the run has just ended and its `finished` is on its way; Piston drops input
    // written to a finished job too.
    if (written || written.error().code == Errc::kNotFound) return;
    if (written.error().code == Errc::kLimitUnavailable) {
      return Fail("stdin: the program is not reading its input and the pipe is full; " +
                  std::to_string(data.size()) + " bytes were not written");
    }
    Fail("stdin: " + written.error().message());
  }

  // Called by the service under the execution's lock: only queue messages here.
  void OnEvent(const engine::Event& e) {
    using Kind = engine::Event::Kind;
    std::lock_guard lock(mu_);
    const bool output =
        e.kind == Kind::kStdout || e.kind == Kind::kStderr || e.kind == Kind::kCompileOutput;
    if (output) {
      engine::Event whole = e;
      whole.data = WholeUtf8(e.data, carry_[CarryKey(e)]);
      if (!whole.data.empty()) Emit(session_.OnEvent(whole));
      return;
    }
    // Piston's runtime message names the runtime, not the alias the client used; the engine's
    // `started` carries only the version.
    if (e.kind == Kind::kStarted && e.payload.is_object() && !e.payload.contains("language") &&
        !language_id_.empty()) {
      engine::Event named = e;
      named.payload["language"] = language_id_;
      return Emit(session_.OnEvent(named));
    }
    // A stage's last bytes that never completed a character go out before its end (as U+FFFD).
    if (e.kind == Kind::kCompileFinished || e.kind == Kind::kFinished) {
      for (auto& [key, carry] : carry_) {
        if (carry.empty() || (e.kind == Kind::kCompileFinished && !key.starts_with("compile")))
          continue;
        engine::Event rest;
        rest.kind = key.starts_with("compile") ? Kind::kCompileOutput
                    : key == "stderr"          ? Kind::kStderr
                                               : Kind::kStdout;
        rest.stream = key.ends_with("stderr") ? "stderr" : "stdout";
        rest.data = std::move(carry);
        carry.clear();
        Emit(session_.OnEvent(rest));
      }
    }
    Emit(session_.OnEvent(e));
  }

  static std::string CarryKey(const engine::Event& e) {
    switch (e.kind) {
      case engine::Event::Kind::kStdout:
        return "stdout";
      case engine::Event::Kind::kStderr:
        return "stderr";
      default:
        return e.stream == "stderr" ? "compile stderr" : "compile stdout";
    }
  }

  Api& api_;
  const Caller caller_;
  std::mutex mu_;  // everything below but timer_, which only the connection's strand touches
  PistonSession session_;
  std::shared_ptr<WsConnection> conn_;
  std::string id_;           // the execution, once admitted
  std::string language_id_;  // its language's id (the client may have named an alias)
  std::shared_ptr<engine::ExecutionService::Subscription> subscription_;
  std::map<std::string, std::string> carry_;  // per stream: bytes of a character cut short
  boost::asio::steady_timer timer_;
};

}  // namespace

bool Api::HandlePiston(HttpRequest& req, const std::shared_ptr<Exchange>& ex, const Caller& caller,
                       Clock::time_point start) {
  // Copies: `req` moves into the subscription below.
  const std::string path(PathOf(req.target()));
  const std::string route(PistonRoute(path));
  if (route.empty()) return false;
  const auto method = req.method();
  auto wrong_method = [&](const std::string& metric, const char* allowed) {
    auto res = Message(
        req, 405,
        std::string(req.method_string()) + " is not allowed on " + path + " (use " + allowed + ")");
    res.set(http::field::allow, allowed);
    Reply(ex, metric, start, std::move(res));
    return true;
  };

  if (route == "/runtimes") {
    const std::string metric = "/api/v2/runtimes";
    if (method != http::verb::get) return wrong_method(metric, "GET");
    Reply(ex, metric, start,
          JsonResponse(req, 200, Dump(PistonRuntimesToJson(Runtimes(LanguagesOf(deps))))));
    return true;
  }
  if (route == "/connect") {
    // A WebSocket upgrade never gets here (Api::Upgrade takes it).
    auto res = Message(req, 426, path + " is a WebSocket endpoint (Upgrade: websocket)");
    res.set(http::field::upgrade, "websocket");
    Reply(ex, "/api/v2/connect", start, std::move(res));
    return true;
  }
  if (route != "/execute") {
    Reply(ex, "unmatched", start,
          Message(req, 404,
                  "Not Found: " + path +
                      " (the Piston API has GET /api/v2/runtimes, POST /api/v2/execute and the "
                      "WebSocket /api/v2/connect)"));
    return true;
  }

  const std::string metric = "/api/v2/execute";
  if (method != http::verb::post) return wrong_method(metric, "POST");
  // The body is JSON whatever its Content-Type says: piston-client sends text/plain.
  json body = json::parse(req.body(), nullptr, false);
  if (body.is_discarded()) {
    Reply(ex, metric, start, Message(req, 400, "the request body is not valid JSON"));
    return true;
  }
  auto request = PistonExecuteFromJson(body, options.caps);
  if (!request) {
    Reply(ex, metric, start,
          JsonResponse(req, static_cast<unsigned>(request.error().http_status),
                       Dump(ToJson(request.error()))));
    return true;
  }
  if (auto bad = CheckLanguage(*request)) {
    // Piston's own words for a language it does not have; ours for one that is not usable here.
    const std::string message =
        FindLanguage(LanguagesOf(deps), request->language) != nullptr
            ? bad->message
            : request->language + "-" + body["version"].get<std::string>() + " runtime is unknown";
    Reply(ex, metric, start, Message(req, 400, message));
    return true;
  }
  NameFiles(*request);
  Admitted a = Admit(std::move(*request), caller, /*interactive=*/false);
  if (a.status != 0) {
    auto res = Message(req, a.status, RefusalMessage(a));
    if (a.retry_after > 0) res.set(http::field::retry_after, std::to_string(a.retry_after));
    Reply(ex, metric, start, std::move(res));
    return true;
  }
  // Fold the events into the result and answer on `finished`.
  struct Waiter {
    std::mutex mu;
    engine::ExecutionResult folded;
  };
  auto waiter = std::make_shared<Waiter>();
  auto shared_req = std::make_shared<HttpRequest>(std::move(req));
  auto sub = deps.service.Subscribe(
      a.id, 0, [this, waiter, ex, shared_req, metric, start](const engine::Event& e) {
        std::lock_guard lock(waiter->mu);
        engine::Apply(waiter->folded, e);
        if (e.kind != engine::Event::Kind::kFinished) return;
        if (auto rejected = PistonRejection(waiter->folded)) {
          return Reply(ex, metric, start,
                       JsonResponse(*shared_req, static_cast<unsigned>(rejected->http_status),
                                    Dump(ToJson(*rejected))));
        }
        Reply(ex, metric, start,
              JsonResponse(*shared_req, 200, Dump(PistonResultToJson(waiter->folded))));
      });
  if (!sub) {
    Reply(ex, metric, start, Message(*shared_req, 500, sub.error().message()));
    return true;
  }
  ex->Hold(std::make_shared<engine::ExecutionService::Subscription>(std::move(*sub)));
  return true;
}

std::shared_ptr<WsHandler> Api::PistonWs(const Caller& caller) {
  return std::make_shared<PistonWsHandler>(*this, caller);
}

}  // namespace polyrun::server
