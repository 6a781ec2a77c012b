#include "server/http.h"

#include <boost/asio/ip/address.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <sstream>
#include <vector>

namespace polyrun::server {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;

namespace {

std::string PeerOf(const tcp::socket& s, bool& loopback) {
  boost::system::error_code ec;
  auto ep = s.remote_endpoint(ec);
  if (ec) {
    loopback = false;
    return "?";
  }
  loopback = ep.address().is_loopback();
  return ep.address().to_string();
}

std::string Serialize(const HttpResponse& res) {
  std::ostringstream out;
  out << res;
  return out.str();
}

}  // namespace

// Messages queued but not yet written, over every connection (each counted from its queueing
// until it is written or dropped with its connection), and the WebSockets to close at a stop.
struct ConnectionTracker {
  std::mutex mu;
  std::condition_variable cv;
  int64_t pending = 0;
  std::vector<std::weak_ptr<WsConnection>> sockets;

  void Add() {
    std::lock_guard lock(mu);
    ++pending;
  }
  void Done(int64_t n = 1) {
    if (n == 0) return;
    std::lock_guard lock(mu);
    pending -= n;
    if (pending <= 0) cv.notify_all();
  }
};

namespace {

// One WebSocket connection: a read loop feeding the handler and a queue of outgoing messages.
class WsSession : public WsConnection, public std::enable_shared_from_this<WsSession> {
 public:
  WsSession(tcp::socket&& socket, std::shared_ptr<WsHandler> handler, size_t max_message,
            std::shared_ptr<ConnectionTracker> tracker)
      : ws_(std::move(socket)), handler_(std::move(handler)), tracker_(std::move(tracker)) {
    ws_.read_message_max(max_message);
  }

  void Accept(const HttpRequest& req) {
    ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
    ws_.async_accept(req, [self = shared_from_this()](beast::error_code ec) {
      if (ec) return self->Closed();
      self->handler_->OnOpen(self);
      self->Read();
    });
  }

  void Send(std::string text) override {
    tracker_->Add();
    net::post(ws_.get_executor(), [self = shared_from_this(), t = std::move(text)]() mutable {
      if (self->closing_ || self->gone_) return self->tracker_->Done();
      self->out_.push_back({std::move(t), false, 0, {}});
      if (!self->writing_) self->Flush();
    });
  }

  void Close(uint16_t code, std::string reason) override {
    tracker_->Add();
    net::post(ws_.get_executor(), [self = shared_from_this(), code, r = std::move(reason)]() {
      if (self->closing_ || self->gone_) return self->tracker_->Done();
      self->closing_ = true;
      self->out_.push_back({{}, true, code, r});
      if (!self->writing_) self->Flush();
    });
  }

  void Hold(std::shared_ptr<void> resource) override {
    std::lock_guard lock(held_mu_);
    if (!gone_flag_) held_.push_back(std::move(resource));
  }

 private:
  struct Out {
    std::string text;
    bool close = false;
    uint16_t code = 0;
    std::string reason;
  };

  void Read() {
    ws_.async_read(buf_, [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec) {
        // message_too_big: Beast has already closed the stream with 1009.
        return self->Closed();
      }
      std::string text = beast::buffers_to_string(self->buf_.data());
      self->buf_.consume(self->buf_.size());
      self->handler_->OnMessage(std::move(text));
      self->Read();
    });
  }

  void Flush() {
    if (out_.empty() || gone_) {
      writing_ = false;
      return;
    }
    writing_ = true;
    Out& o = out_.front();
    if (o.close) {
      websocket::close_reason cr;
      cr.code = o.code;
      cr.reason = o.reason;
      ws_.async_close(cr, [self = shared_from_this()](beast::error_code) { self->Closed(); });
      return;
    }
    ws_.text(true);
    ws_.async_write(net::buffer(o.text), [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec) return self->Closed();
      self->out_.pop_front();
      self->tracker_->Done();
      self->Flush();
    });
  }

  void Closed() {
    if (gone_) return;
    gone_ = true;
    tracker_->Done(static_cast<int64_t>(out_.size()));
    out_.clear();
    handler_->OnClose();
    std::vector<std::shared_ptr<void>> held;
    {
      std::lock_guard lock(held_mu_);
      gone_flag_ = true;
      held.swap(held_);
    }
  }

  websocket::stream<beast::tcp_stream> ws_;
  beast::flat_buffer buf_;
  std::shared_ptr<WsHandler> handler_;
  std::shared_ptr<ConnectionTracker> tracker_;
  std::deque<Out> out_;  // strand only
  bool writing_ = false, closing_ = false, gone_ = false;
  std::mutex held_mu_;
  bool gone_flag_ = false;
  std::vector<std::shared_ptr<void>> held_;
};

class HttpSession;

// The reply side of one request on an HttpSession.
class SessionExchange : public Exchange {
 public:
  SessionExchange(std::shared_ptr<HttpSession> session, bool keep_alive, unsigned version)
      : session_(std::move(session)), keep_alive_(keep_alive), version_(version) {}
  void Send(HttpResponse response) override;
  void StartStream(HttpResponse header) override;
  void Write(std::string data) override;
  void End() override;
  void Hold(std::shared_ptr<void> resource) override;
  const std::string& peer() const override;
  bool peer_is_loopback() const override;

 private:
  std::shared_ptr<HttpSession> session_;
  bool keep_alive_;
  unsigned version_;
};

class HttpSession : public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(tcp::socket&& socket, std::shared_ptr<const HttpRoutes> routes,
              const HttpLimits& limits, std::shared_ptr<ConnectionTracker> tracker)
      : stream_(std::move(socket)),
        routes_(std::move(routes)),
        limits_(limits),
        tracker_(std::move(tracker)) {
    peer_ = PeerOf(stream_.socket(), loopback_);
  }

  void Start() {
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->Read(); });
  }

  // Queues raw bytes; `then`: what follows once they are written.
  enum class After { kNothing, kReadNext, kClose };
  void Queue(std::string bytes, After then) {
    tracker_->Add();
    net::post(stream_.get_executor(),
              [self = shared_from_this(), b = std::move(bytes), then]() mutable {
                if (self->gone_) return self->tracker_->Done();
                self->out_.push_back({std::move(b), then});
                if (!self->writing_) self->Flush();
              });
  }

  void Hold(std::shared_ptr<void> resource) {
    std::lock_guard lock(held_mu_);
    if (!released_) held_.push_back(std::move(resource));
  }
  void Release() {
    std::vector<std::shared_ptr<void>> held;
    std::lock_guard lock(held_mu_);
    held.swap(held_);
  }

  const std::string& peer() const { return peer_; }
  bool loopback() const { return loopback_; }

 private:
  struct Out {
    std::string bytes;
    After then;
  };

  void Read() {
    parser_.emplace();
    parser_->body_limit(limits_.max_body);
    parser_->header_limit(64 * 1024);
    stream_.expires_after(limits_.read_timeout);
    http::async_read(
        stream_, buf_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnRead(ec); });
  }

  void OnRead(beast::error_code ec) {
    if (ec == http::error::end_of_stream) return Shutdown();
    if (ec == http::error::body_limit) {
      HttpResponse res{http::status::payload_too_large, 11};
      res.set(http::field::content_type, "application/json");
      res.body() = R"({"error":{"code":"too_large","field":"body","message":"body: larger than )" +
                   std::to_string(limits_.max_body) + R"( bytes"}})";
      res.keep_alive(false);
      res.prepare_payload();
      return Queue(Serialize(res), After::kClose);
    }
    if (ec || !parser_) return Shutdown();
    HttpRequest req = parser_->release();
    stream_.expires_never();
    if (websocket::is_upgrade(req)) {
      HttpResponse refusal;
      auto handler =
          routes_->websocket ? routes_->websocket(req, peer_, loopback_, refusal) : nullptr;
      if (!handler) {
        if (refusal.result_int() == 200) {
          refusal.result(http::status::not_found);
          refusal.body() = R"({"error":{"code":"not_found","message":"no WebSocket here"}})";
        }
        refusal.keep_alive(false);
        refusal.prepare_payload();
        return Queue(Serialize(refusal), After::kClose);
      }
      auto ws = std::make_shared<WsSession>(stream_.release_socket(), std::move(handler),
                                            limits_.max_ws_message, tracker_);
      {
        std::lock_guard lock(tracker_->mu);
        std::erase_if(tracker_->sockets, [](const auto& w) { return w.expired(); });
        tracker_->sockets.push_back(ws);
      }
      ws->Accept(req);
      return;
    }
    auto ex =
        std::make_shared<SessionExchange>(shared_from_this(), req.keep_alive(), req.version());
    routes_->request(req, std::move(ex));
  }

  void Flush() {
    if (out_.empty()) {
      writing_ = false;
      return;
    }
    writing_ = true;
    stream_.expires_after(std::chrono::seconds(60));
    net::async_write(stream_, net::buffer(out_.front().bytes),
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       if (ec) return self->Shutdown();
                       After then = self->out_.front().then;
                       self->out_.pop_front();
                       self->tracker_->Done();
                       if (then == After::kClose) return self->Shutdown();
                       if (then == After::kReadNext) {
                         self->Release();
                         self->Read();
                       }
                       self->Flush();
                     });
  }

  void Shutdown() {
    if (gone_) return;
    gone_ = true;
    tracker_->Done(static_cast<int64_t>(out_.size()));
    out_.clear();
    beast::error_code ec;
    ec = stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream_.close();
    std::lock_guard lock(held_mu_);
    released_ = true;
    std::vector<std::shared_ptr<void>> held;
    held.swap(held_);
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buf_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<const HttpRoutes> routes_;
  HttpLimits limits_;
  std::shared_ptr<ConnectionTracker> tracker_;
  std::string peer_;
  bool loopback_ = false;
  std::deque<Out> out_;  // strand only
  bool writing_ = false, gone_ = false;
  std::mutex held_mu_;
  bool released_ = false;
  std::vector<std::shared_ptr<void>> held_;
};

void SessionExchange::Send(HttpResponse response) {
  response.version(version_);
  response.keep_alive(keep_alive_);
  response.prepare_payload();
  session_->Queue(Serialize(response),
                  keep_alive_ ? HttpSession::After::kReadNext : HttpSession::After::kClose);
}

void SessionExchange::StartStream(HttpResponse header) {
  header.version(version_);
  header.keep_alive(false);
  header.body().clear();
  // No length: the body ends when the connection closes (End).
  std::string bytes = Serialize(header);
  session_->Queue(std::move(bytes), HttpSession::After::kNothing);
}

void SessionExchange::Write(std::string data) {
  session_->Queue(std::move(data), HttpSession::After::kNothing);
}

void SessionExchange::End() {
  session_->Queue({}, HttpSession::After::kClose);
}

void SessionExchange::Hold(std::shared_ptr<void> resource) {
  session_->Hold(std::move(resource));
}
const std::string& SessionExchange::peer() const {
  return session_->peer();
}
bool SessionExchange::peer_is_loopback() const {
  return session_->loopback();
}

}  // namespace

HttpListener::HttpListener(net::io_context& ioc, HttpRoutes routes, HttpLimits limits)
    : ioc_(ioc),
      acceptor_(net::make_strand(ioc)),
      routes_(std::make_shared<const HttpRoutes>(std::move(routes))),
      limits_(limits),
      tracker_(std::make_shared<ConnectionTracker>()) {}

Result<std::shared_ptr<HttpListener>> HttpListener::Open(net::io_context& ioc,
                                                         const tcp::endpoint& endpoint,
                                                         HttpRoutes routes, HttpLimits limits) {
  auto l = std::make_shared<HttpListener>(ioc, std::move(routes), limits);
  beast::error_code ec;
  const std::string where = endpoint.address().to_string() + ":" + std::to_string(endpoint.port());
  // The error_code overloads also return the code; it is checked through `ec`.
  if (ec = l->acceptor_.open(endpoint.protocol(), ec); ec) {
    return SysFail("socket", "listen " + where, ec.value());
  }
  ec = l->acceptor_.set_option(net::socket_base::reuse_address(true), ec);
  if (ec = l->acceptor_.bind(endpoint, ec); ec) {
    return SysFail("bind", "listen " + where + ": " + ec.message(), ec.value());
  }
  if (ec = l->acceptor_.listen(net::socket_base::max_listen_connections, ec); ec) {
    return SysFail("listen", "listen " + where, ec.value());
  }
  l->port_ = l->acceptor_.local_endpoint().port();
  return l;
}

void HttpListener::Start() {
  Accept();
}

void HttpListener::Stop() {
  net::post(acceptor_.get_executor(), [self = shared_from_this()] {
    beast::error_code ec;
    ec = self->acceptor_.close(ec);
  });
}

void HttpListener::Drain(std::chrono::milliseconds timeout) {
  std::vector<std::weak_ptr<WsConnection>> sockets;
  {
    std::lock_guard lock(tracker_->mu);
    sockets = tracker_->sockets;
  }
  for (const auto& w : sockets) {
    if (auto ws = w.lock()) ws->Close(1001, "server shutting down");
  }
  std::unique_lock lock(tracker_->mu);
  tracker_->cv.wait_for(lock, timeout, [&] { return tracker_->pending <= 0; });
}

void HttpListener::Accept() {
  acceptor_.async_accept(net::make_strand(ioc_), [self = shared_from_this()](beast::error_code ec,
                                                                             tcp::socket socket) {
    if (ec == net::error::operation_aborted || !self->acceptor_.is_open()) return;
    if (!ec) {
      ec = socket.set_option(tcp::no_delay(true), ec);  // best effort: latency, not correctness
      std::make_shared<HttpSession>(std::move(socket), self->routes_, self->limits_, self->tracker_)
          ->Start();
    }
    self->Accept();
  });
}

HttpResponse JsonResponse(const HttpRequest& req, unsigned status, const std::string& body) {
  HttpResponse res{static_cast<http::status>(status), req.version()};
  res.set(http::field::content_type, "application/json");
  res.keep_alive(req.keep_alive());
  res.body() = body;
  res.prepare_payload();
  return res;
}

}  // namespace polyrun::server
