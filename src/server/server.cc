#include "server/server.h"

#include <boost/asio/ip/address.hpp>
#include <cstdio>

#include "engine/engine.h"
#include "server/api.h"

namespace polyrun::server {

namespace net = boost::asio;
using tcp = net::ip::tcp;

Result<tcp::endpoint> ParseListen(const std::string& text) {
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos) {
    return Fail(Errc::kInvalidArgument, "listen: expected HOST:PORT, got \"" + text + "\"");
  }
  std::string host = text.substr(0, colon);
  const std::string port_text = text.substr(colon + 1);
  char* end = nullptr;
  const unsigned long port = std::strtoul(port_text.c_str(), &end, 10);
  if (port_text.empty() || *end != '\0' || port > 65535) {
    return Fail(Errc::kInvalidArgument,
                "listen: bad port \"" + port_text + "\" in \"" + text + "\"");
  }
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty()) host = "0.0.0.0";
  if (host == "localhost") host = "127.0.0.1";
  boost::system::error_code ec;
  auto addr = net::ip::make_address(host, ec);
  if (ec) {
    return Fail(Errc::kInvalidArgument,
                "listen: \"" + host + "\" is not an IP address (use 127.0.0.1, ::1 or 0.0.0.0)");
  }
  return tcp::endpoint(addr, static_cast<uint16_t>(port));
}

Server::Server(ServerOptions options, ServerDeps deps)
    : options_(std::move(options)), deps_(std::move(deps)) {
  api_ = std::make_unique<Api>(options_, deps_, metrics_);
  deps_.service.Observe([api = api_.get()](const engine::ExecutionResult& r,
                                           const std::string& key) { api->Finished(r, key); });
}

Server::~Server() {
  Stop();
}

Result<void> Server::Start() {
  auto endpoint = ParseListen(options_.listen);
  if (!endpoint) return std::unexpected(endpoint.error());
  if (!endpoint->address().is_loopback() && options_.keys.empty() && !options_.allow_anonymous) {
    return Fail(Errc::kInvalidArgument,
                "listen: " + options_.listen +
                    " is reachable from other hosts and no API keys are configured "
                    "([server.keys.NAME] in the config file); add keys, or set "
                    "server.allow_anonymous = true to serve it without authentication");
  }
  HttpRoutes routes;
  Api* api = api_.get();
  routes.request = [api](HttpRequest& req, const std::shared_ptr<Exchange>& ex) {
    api->Handle(req, ex);
  };
  routes.websocket = [api](const HttpRequest& req, const std::string&, bool loopback,
                           HttpResponse& refusal) { return api->Upgrade(req, loopback, refusal); };
  auto listener = HttpListener::Open(ioc_, *endpoint, std::move(routes), options_.http);
  if (!listener) return std::unexpected(listener.error());
  listener_ = *listener;
  listener_->Start();
  // Replies to long runs are posted from worker threads while no connection has an operation
  // pending: without this the I/O threads would find no work and return.
  work_.emplace(ioc_.get_executor());
  for (size_t i = 0; i < std::max<size_t>(options_.io_threads, 1); ++i) {
    threads_.emplace_back([this] { ioc_.run(); });
  }
  const bool prune = options_.retention_age.count() > 0 || options_.retention_count > 0;
  if (prune) pruner_ = std::thread([this] { Prune(); });
  return {};
}

uint16_t Server::port() const {
  return listener_ ? listener_->port() : 0;
}

void Server::Prune() {
  std::unique_lock lock(stop_mu_);
  while (!stopped_) {
    lock.unlock();
    store::Retention r;
    r.keep_count = options_.retention_count;
    if (options_.retention_age.count() > 0) {
      r.older_than = engine::Rfc3339(std::chrono::system_clock::now() - options_.retention_age);
    }
    // Short transactions, one after another: requests interleave with the pruning.
    for (;;) {
      auto n = deps_.store.Prune(r, 500);
      if (!n) {
        std::fprintf(stderr, "polyrun: retention: %s\n", n.error().message().c_str());
        break;
      }
      if (*n < 500) break;
    }
    lock.lock();
    stop_cv_.wait_for(lock, options_.prune_interval, [&] { return stopped_; });
  }
}

void Server::Stop() {
  {
    std::lock_guard lock(stop_mu_);
    if (stopped_) return;
    stopped_ = true;
  }
  stop_cv_.notify_all();
  if (listener_) listener_->Stop();
  // Runs finish (or are cancelled) while the I/O threads still deliver their results.
  deps_.service.Shutdown(options_.shutdown_grace);
  // After the service: a session's last execution has ended (or was interrupted) by now.
  if (deps_.sessions != nullptr) deps_.sessions->Shutdown();
  api_->session_work.join();
  api_->blocking.join();
  // Every result is handed over by now; let it reach the clients before the threads stop.
  if (listener_) listener_->Drain(std::chrono::seconds(2));
  work_.reset();
  ioc_.stop();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
  if (pruner_.joinable()) pruner_.join();
}

std::shared_ptr<WsHandler> Api::Upgrade(const HttpRequest& req, bool /*loopback*/,
                                        HttpResponse& refusal) {
  auto caller = Authenticate(req);
  if (!caller) {
    refusal = Error(req, 401, "unauthorized", "Authorization",
                    "Authorization: a valid API key is required (Authorization: Bearer KEY)");
    return nullptr;
  }
  const std::string path(PathOf(req.target()));
  if (path == "/v1/ws") return NativeWs(*caller);
  if (path == "/api/v2/connect" || path == "/api/v2/piston/connect") return PistonWs(*caller);
  refusal = Error(req, 404, "not_found", "path", "no WebSocket at " + path);
  return nullptr;
}

}  // namespace polyrun::server
