#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "util/error.h"

// The HTTP/1.1 and WebSocket transport (Boost.Beast): connections, request bodies with a size
// cap, replies that may come later from any thread, Server-Sent Event streams and WebSocket
// sessions. It knows nothing of polyrun's API; the Server routes.
namespace polyrun::server {

using HttpRequest = boost::beast::http::request<boost::beast::http::string_body>;
using HttpResponse = boost::beast::http::response<boost::beast::http::string_body>;

// The reply side of one request. Exactly one of Send or StartStream is called, once; replies may
// come from any thread, later than the handler returns (a run that is waited for). Owners keep
// the exchange in a shared_ptr.
class Exchange {
 public:
  virtual ~Exchange() = default;
  virtual void Send(HttpResponse response) = 0;
  // A stream (Server-Sent Events): `header` is sent without a length, then every Write in
  // order; End closes the connection. Writes after the client left are dropped.
  virtual void StartStream(HttpResponse header) = 0;
  virtual void Write(std::string data) = 0;
  virtual void End() = 0;
  // Keeps `resource` (a subscription, say) alive until the exchange is finished or the
  // connection is gone, whichever is first.
  virtual void Hold(std::shared_ptr<void> resource) = 0;
  virtual const std::string& peer() const = 0;  // remote address, e.g. "127.0.0.1"
  virtual bool peer_is_loopback() const = 0;
};

// One WebSocket connection, from the server's side. Send and Close may be called from any
// thread; messages go out in call order.
class WsConnection {
 public:
  virtual ~WsConnection() = default;
  virtual void Send(std::string text) = 0;
  // Sends the close frame (code from docs/api.md's table) after every queued message.
  virtual void Close(uint16_t code, std::string reason) = 0;
  virtual void Hold(std::shared_ptr<void> resource) = 0;
};

// What the server does with a WebSocket: created per connection after the upgrade.
class WsHandler {
 public:
  virtual ~WsHandler() = default;
  virtual void OnOpen(std::shared_ptr<WsConnection> conn) = 0;
  virtual void OnMessage(std::string text) = 0;  // one text message, in order
  virtual void OnClose() = 0;                    // the peer closed or the connection failed
};

struct HttpRoutes {
  // Every plain request; runs on an I/O thread and must not block on a run.
  std::function<void(HttpRequest&, std::shared_ptr<Exchange>)> request;
  // An upgrade request: a handler, or nullptr with `refusal` filled in (then answered as is).
  std::function<std::shared_ptr<WsHandler>(const HttpRequest&, const std::string& peer,
                                           bool loopback, HttpResponse& refusal)>
      websocket;
};

struct HttpLimits {
  size_t max_body = 16 << 20;             // 413 beyond
  std::chrono::seconds read_timeout{30};  // headers and body
  size_t max_ws_message = 16 << 20;       // close 1009 beyond
};

struct ConnectionTracker;  // http.cc

// Accepts connections on `endpoint` and serves them on `ioc`'s threads.
class HttpListener : public std::enable_shared_from_this<HttpListener> {
 public:
  static Result<std::shared_ptr<HttpListener>> Open(boost::asio::io_context& ioc,
                                                    const boost::asio::ip::tcp::endpoint& endpoint,
                                                    HttpRoutes routes, HttpLimits limits);
  void Start();
  void Stop();  // stops accepting; open connections finish on their own
  // For a graceful stop, after the last response was handed over: closes every WebSocket (1001,
  // after what is queued for it) and waits until everything queued on any connection has been
  // written or `timeout` passed.
  void Drain(std::chrono::milliseconds timeout);
  uint16_t port() const { return port_; }

  HttpListener(boost::asio::io_context& ioc, HttpRoutes routes, HttpLimits limits);

 private:
  void Accept();
  boost::asio::io_context& ioc_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::shared_ptr<const HttpRoutes> routes_;
  HttpLimits limits_;
  std::shared_ptr<ConnectionTracker> tracker_;
  uint16_t port_ = 0;
};

// A JSON response with the right headers (`keep_alive` from the request).
HttpResponse JsonResponse(const HttpRequest& req, unsigned status, const std::string& body);

}  // namespace polyrun::server
