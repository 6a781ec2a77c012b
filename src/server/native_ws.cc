// The native WebSocket, GET /v1/ws: start a run, feed its stdin while it runs, receive its
// events live, cancel it. Messages and close codes: docs/api.md.
#include <atomic>
#include <mutex>

#include "engine/result_json.h"
#include "server/api.h"

namespace polyrun::server {

using nlohmann::json;

namespace {

constexpr auto kReplace = json::error_handler_t::replace;

class NativeWsHandler : public WsHandler, public std::enable_shared_from_this<NativeWsHandler> {
 public:
  NativeWsHandler(Api& api, Caller caller) : api_(api), caller_(std::move(caller)) {}

  void OnOpen(std::shared_ptr<WsConnection> conn) override {
    std::lock_guard lock(mu_);
    conn_ = std::move(conn);
  }

  void OnMessage(std::string text) override {
    json msg = json::parse(text, nullptr, false);
    if (msg.is_discarded() || !msg.is_object() || !msg.contains("type") ||
        !msg["type"].is_string()) {
      return SendError("invalid_message", "type",
                       "expected a JSON object with a string \"type\" (run, stdin, "
                       "stdin_close, cancel, signal)");
    }
    const std::string type = msg["type"];
    if (type == "run") return Run(std::move(msg));
    const std::string id = Current();
    if (type == "stdin" || type == "stdin_close" || type == "cancel" || type == "signal") {
      if (id.empty()) return SendError("not_running", "type", type + ": no run is in progress");
    }
    if (type == "stdin") {
      if (!msg.contains("data") || !msg["data"].is_string()) {
        return SendError("invalid_message", "data", "data: expected a string");
      }
      if (auto w = api_.deps.service.WriteStdin(id, msg["data"].get<std::string>()); !w) {
        return SendError("stdin_refused", "data", w.error().message());
      }
    } else if (type == "stdin_close") {
      if (auto c = api_.deps.service.CloseStdin(id); !c) {
        return SendError("stdin_refused", "type", c.error().message());
      }
    } else if (type == "cancel") {
      api_.deps.service.Cancel(id);
    } else if (type == "signal") {
      // The sandbox delivers no signals into a run; a terminating one ends it (cancelled).
      static const std::vector<std::string> kEnding = {"SIGKILL", "SIGTERM", "SIGINT", "SIGQUIT",
                                                       "SIGHUP"};
      std::string sig = msg.value("signal", "");
      if (std::find(kEnding.begin(), kEnding.end(), sig) == kEnding.end()) {
        return SendError("invalid_signal", "signal",
                         "signal: \"" + sig +
                             "\" is not one polyrun delivers; SIGKILL, SIGTERM, SIGINT, SIGQUIT "
                             "and SIGHUP end the run (status cancelled)");
      }
      api_.deps.service.Cancel(id);
    } else {
      SendError("invalid_message", "type", "type: unknown message type \"" + type + "\"");
    }
  }

  void OnClose() override {
    // Nobody is left to read the output or type the input: the run ends with its connection.
    const std::string id = Current();
    if (!id.empty()) api_.deps.service.Cancel(id);
    std::shared_ptr<engine::ExecutionService::Subscription> sub;
    std::lock_guard lock(mu_);
    conn_.reset();
    // Dropped here, unlocked, so the last reference to this handler is never released by the
    // service while it holds the execution's lock.
    sub.swap(subscription_);
  }

 private:
  std::string Current() {
    std::lock_guard lock(mu_);
    return current_;
  }

  void Send(const json& j) {
    std::shared_ptr<WsConnection> conn;
    {
      std::lock_guard lock(mu_);
      conn = conn_;
    }
    if (conn) conn->Send(j.dump(-1, ' ', false, kReplace));
  }

  void SendError(const std::string& code, const std::string& field, const std::string& message) {
    Send({{"type", "error"}, {"error", {{"code", code}, {"field", field}, {"message", message}}}});
  }

  void SendRefusal(const engine::RequestError& e) {
    json err = engine::ToJson(e);
    err["type"] = "error";
    Send(err);
  }

  void Run(json msg) {
    if (!Current().empty()) {
      return SendError("run_in_progress", "type", "run: a run is already in progress here");
    }
    bool interactive = true;
    if (msg.contains("interactive")) {
      if (!msg["interactive"].is_boolean()) {
        return SendError("invalid_request", "interactive", "interactive: expected a boolean");
      }
      interactive = msg["interactive"];
    }
    msg.erase("type");
    msg.erase("interactive");
    auto request = engine::RequestFromJson(msg, api_.options.caps);
    if (!request) return SendRefusal(request.error());
    // With a session_id the code runs in that session: stdin answers its input requests and
    // cancel interrupts it (the session and its state survive).
    if (auto bad = request->session_id.empty() ? api_.CheckLanguage(*request)
                                               : api_.BindSession(*request)) {
      return SendRefusal(*bad);
    }
    api_.NameFiles(*request);
    auto admitted = api_.Admit(std::move(*request), caller_, interactive);
    if (admitted.status != 0) {
      json err = admitted.error;
      err["type"] = "error";
      if (admitted.retry_after > 0) err["retry_after"] = admitted.retry_after;
      return Send(err);
    }
    {
      std::lock_guard lock(mu_);
      current_ = admitted.id;
    }
    Send({{"type", "accepted"}, {"id", admitted.id}});
    auto self = shared_from_this();
    auto sub = api_.deps.service.Subscribe(admitted.id, 0,
                                           [self](const engine::Event& e) { self->OnEvent(e); });
    if (!sub) return SendError("internal_error", "", sub.error().message());
    auto next = std::make_shared<engine::ExecutionService::Subscription>(std::move(*sub));
    std::lock_guard lock(mu_);
    // A finished run's subscription is inert; the next run replaces it (destroyed unlocked).
    next.swap(subscription_);
  }

  // Runs under the execution's lock: only queue messages, never block.
  void OnEvent(const engine::Event& e) {
    std::shared_ptr<WsConnection> conn;
    {
      std::lock_guard lock(mu_);
      conn = conn_;
      engine::Apply(folded_, e);
    }
    if (conn) conn->Send(EventText(e, carry_out_, carry_err_));
    if (e.kind != engine::Event::Kind::kFinished) return;
    json result;
    {
      std::lock_guard lock(mu_);
      result = engine::ToJson(folded_);
      folded_ = {};
      current_.clear();
    }
    carry_out_.clear();
    carry_err_.clear();
    if (conn)
      conn->Send(json{{"type", "result"}, {"result", result}}.dump(-1, ' ', false, kReplace));
  }

  Api& api_;
  Caller caller_;
  std::mutex mu_;
  std::shared_ptr<WsConnection> conn_;
  std::string current_;
  engine::ExecutionResult folded_;
  std::shared_ptr<engine::ExecutionService::Subscription> subscription_;
  std::string carry_out_, carry_err_;  // only touched by OnEvent (one execution at a time)
};

}  // namespace

std::shared_ptr<WsHandler> Api::NativeWs(const Caller& caller) {
  return std::make_shared<NativeWsHandler>(*this, caller);
}

}  // namespace polyrun::server
