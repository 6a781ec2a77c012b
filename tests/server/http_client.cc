#include "http_client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <cctype>
#include <functional>
#include <stdexcept>

namespace polyrun::testing {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;

namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

tcp::endpoint Loopback(uint16_t port) {
  return {net::ip::address_v4::loopback(), port};
}

// Runs `ioc` until a completion handler sets `done`. Past `timeout`, `abort` closes the socket
// so that the pending operation completes (with an error), and the call throws.
void Drive(net::io_context& ioc, const bool& done, std::chrono::milliseconds timeout,
           const std::function<void()>& abort, const std::string& what) {
  ioc.restart();
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done) {
    if (ioc.run_one_until(deadline) == 0) break;
  }
  if (done) return;
  abort();
  ioc.restart();
  ioc.run();
  throw std::runtime_error(what + ": nothing within " + std::to_string(timeout.count()) + " ms");
}

template <class Message>
void CopyHeaders(const Message& m, HttpReply& out) {
  for (const auto& f : m) out.headers[Lower(f.name_string())] = std::string(f.value());
}

}  // namespace

std::string HttpReply::Header(std::string_view name) const {
  auto it = headers.find(Lower(name));
  return it == headers.end() ? "" : it->second;
}

nlohmann::json HttpReply::Json() const {
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_discarded())
    throw std::runtime_error("not JSON (HTTP " + std::to_string(status) +
                             "): " + body.substr(0, 400));
  return j;
}

// ---- HttpClient ------------------------------------------------------------------------------

HttpClient::HttpClient(uint16_t port, std::chrono::milliseconds timeout)
    : port_(port), timeout_(timeout), stream_(ioc_) {}

HttpClient::~HttpClient() {
  Disconnect();
}

void HttpClient::Connect() {
  bool done = false;
  beast::error_code ec;
  stream_.async_connect(Loopback(port_), [&](beast::error_code e) {
    ec = e;
    done = true;
  });
  Drive(
      ioc_, done, timeout_, [this] { stream_.close(); }, "connect");
  if (ec)
    throw std::runtime_error("connect to port " + std::to_string(port_) + ": " + ec.message());
  connected_ = true;
  ++connections_;
  buffer_.clear();
}

void HttpClient::Disconnect() {
  if (!connected_) return;
  beast::error_code ec;
  ec = stream_.socket().shutdown(tcp::socket::shutdown_both, ec);  // best effort: closing
  stream_.close();
  connected_ = false;
}

HttpReply HttpClient::Request(http::verb method, const std::string& target, const std::string& body,
                              const Headers& headers) {
  http::request<http::string_body> req{method, target, 11};
  req.set(http::field::host, "127.0.0.1:" + std::to_string(port_));
  req.set(http::field::user_agent, "polyrun-server-test");
  if (!body.empty()) req.set(http::field::content_type, "application/json");
  for (const auto& [name, value] : headers) req.set(name, value);
  req.body() = body;
  req.keep_alive(true);
  req.prepare_payload();
  const std::string what = std::string(http::to_string(method)) + " " + target;
  for (int attempt = 0;; ++attempt) {
    const bool reused = connected_;
    if (!connected_) Connect();
    bool done = false;
    beast::error_code write_ec;
    http::async_write(stream_, req, [&](beast::error_code e, size_t) {
      write_ec = e;
      done = true;
    });
    Drive(
        ioc_, done, timeout_, [this] { stream_.close(); }, what);
    // Even when the write failed the server may have answered (a refusal sent before the
    // whole body was read): read what it said.
    http::response_parser<http::string_body> parser;
    parser.body_limit(1u << 30);
    done = false;
    beast::error_code read_ec;
    http::async_read(stream_, buffer_, parser, [&](beast::error_code e, size_t) {
      read_ec = e;
      done = true;
    });
    Drive(
        ioc_, done, timeout_, [this] { stream_.close(); }, what);
    if (read_ec) {
      Disconnect();
      // A kept-alive connection the server closed in the meantime: the request never reached
      // it, so sending it again on a fresh connection is safe.
      const bool stale = read_ec == http::error::end_of_stream ||
                         read_ec == net::error::connection_reset ||
                         read_ec == net::error::broken_pipe;
      if (reused && attempt == 0 && stale) continue;
      throw std::runtime_error(what + ": " + read_ec.message() +
                               (write_ec ? " (write: " + write_ec.message() + ")" : ""));
    }
    auto res = parser.release();
    HttpReply reply;
    reply.status = res.result_int();
    CopyHeaders(res, reply);
    reply.body = std::move(res.body());
    if (!res.keep_alive()) Disconnect();
    return reply;
  }
}

// ---- SseStream --------------------------------------------------------------------------------

nlohmann::json SseEvent::Json() const {
  auto j = nlohmann::json::parse(data, nullptr, false);
  if (j.is_discarded()) throw std::runtime_error("event data is not JSON: " + data);
  return j;
}

SseStream::SseStream(uint16_t port, const std::string& target, const Headers& headers,
                     std::chrono::milliseconds timeout)
    : timeout_(timeout), stream_(ioc_) {
  bool done = false;
  beast::error_code ec;
  stream_.async_connect(Loopback(port), [&](beast::error_code e) {
    ec = e;
    done = true;
  });
  Drive(
      ioc_, done, timeout_, [this] { stream_.close(); }, "connect");
  if (ec) throw std::runtime_error("connect: " + ec.message());
  std::string request = "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
                        "\r\nAccept: text/event-stream\r\n";
  for (const auto& [name, value] : headers) request += name + ": " + value + "\r\n";
  request += "\r\n";
  done = false;
  net::async_write(stream_, net::buffer(request), [&](beast::error_code e, size_t) {
    ec = e;
    done = true;
  });
  Drive(
      ioc_, done, timeout_, [this] { stream_.close(); }, "GET " + target);
  if (ec) throw std::runtime_error("GET " + target + ": " + ec.message());

  size_t end = std::string::npos;
  while ((end = pending_.find("\r\n\r\n")) == std::string::npos) {
    if (!Fill()) throw std::runtime_error("GET " + target + ": closed before the response head");
  }
  const std::string head = pending_.substr(0, end);
  pending_.erase(0, end + 4);
  size_t line_end = head.find("\r\n");
  const std::string status_line = head.substr(0, line_end);
  if (status_line.size() < 12 || !status_line.starts_with("HTTP/1.")) {
    throw std::runtime_error("GET " + target + ": bad status line: " + status_line);
  }
  head_.status = static_cast<unsigned>(std::stoul(status_line.substr(9, 3)));
  while (line_end != std::string::npos) {
    const size_t start = line_end + 2;
    line_end = head.find("\r\n", start);
    const std::string line = head.substr(start, line_end - start);
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.erase(0, 1);
    head_.headers[Lower(line.substr(0, colon))] = value;
  }
  if (!head_.Header("content-length").empty()) {
    // Not a stream: an answer with a body of known length (an error).
    const size_t length = std::stoul(head_.Header("content-length"));
    while (pending_.size() < length) {
      if (!Fill()) break;
    }
    head_.body = pending_.substr(0, length);
    pending_.clear();
    ended_ = true;
  }
}

SseStream::~SseStream() {
  beast::error_code ec;
  ec = stream_.socket().shutdown(tcp::socket::shutdown_both, ec);  // best effort: closing
  stream_.close();
}

bool SseStream::Fill() {
  char buf[16384];
  bool done = false;
  size_t n = 0;
  beast::error_code ec;
  stream_.async_read_some(net::buffer(buf), [&](beast::error_code e, size_t k) {
    ec = e;
    n = k;
    done = true;
  });
  Drive(
      ioc_, done, timeout_, [this] { stream_.close(); }, "event stream read");
  pending_.append(buf, n);
  if (ec == net::error::eof) return n > 0;
  if (ec) throw std::runtime_error("event stream read: " + ec.message());
  return true;
}

std::optional<SseEvent> SseStream::Next() {
  for (;;) {
    const size_t end = pending_.find("\n\n");
    if (end != std::string::npos) {
      const std::string block = pending_.substr(0, end + 1);
      pending_.erase(0, end + 2);
      SseEvent e;
      bool any = false;
      size_t pos = 0;
      while (pos < block.size()) {
        const size_t nl = block.find('\n', pos);
        std::string line = block.substr(pos, nl - pos);
        pos = nl + 1;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        const size_t colon = line.find(':');
        if (colon == 0 || line.empty()) continue;  // a comment
        std::string field = line.substr(0, colon);
        std::string value = colon == std::string::npos ? "" : line.substr(colon + 1);
        if (!value.empty() && value.front() == ' ') value.erase(0, 1);
        any = true;
        if (field == "id") {
          e.id = value;
        } else if (field == "event") {
          e.event = value;
        } else if (field == "data") {
          e.data += (e.data.empty() ? "" : "\n") + value;
        }
      }
      if (any) return e;
      continue;
    }
    if (ended_) {
      if (!pending_.empty()) {
        throw std::runtime_error("event stream ended inside an event: " + pending_);
      }
      return std::nullopt;
    }
    if (!Fill()) ended_ = true;
  }
}

std::vector<SseEvent> SseStream::ReadToEnd() {
  std::vector<SseEvent> all;
  while (auto e = Next()) all.push_back(std::move(*e));
  return all;
}

SseEvent SseStream::Until(const std::string& event, std::vector<SseEvent>* skipped) {
  while (auto e = Next()) {
    if (e->event == event) return *e;
    if (skipped) skipped->push_back(std::move(*e));
  }
  throw std::runtime_error("event stream ended before a \"" + event + "\" event");
}

// ---- WsClient ---------------------------------------------------------------------------------

WsClient::WsClient(uint16_t port, const std::string& target, const Headers& headers,
                   std::chrono::milliseconds timeout)
    : timeout_(timeout), ws_(ioc_) {
  auto abort = [this] { beast::get_lowest_layer(ws_).close(); };
  bool done = false;
  beast::error_code ec;
  beast::get_lowest_layer(ws_).async_connect(Loopback(port), [&](beast::error_code e) {
    ec = e;
    done = true;
  });
  Drive(ioc_, done, timeout_, abort, "connect");
  if (ec) throw std::runtime_error("connect: " + ec.message());
  ws_.set_option(websocket::stream_base::decorator([headers](websocket::request_type& req) {
    for (const auto& [name, value] : headers) req.set(name, value);
  }));
  websocket::response_type res;
  done = false;
  ws_.async_handshake(res, "127.0.0.1:" + std::to_string(port), target, [&](beast::error_code e) {
    ec = e;
    done = true;
  });
  Drive(ioc_, done, timeout_, abort, "WebSocket handshake");
  if (ec == websocket::error::upgrade_declined) {
    refused_ = true;
    refusal_.status = res.result_int();
    CopyHeaders(res, refusal_);
    refusal_.body = res.body();
    return;
  }
  if (ec) throw std::runtime_error("WebSocket handshake: " + ec.message());
  open_ = true;
}

WsClient::~WsClient() {
  beast::error_code ec;
  ec = beast::get_lowest_layer(ws_).socket().shutdown(tcp::socket::shutdown_both, ec);
  beast::get_lowest_layer(ws_).close();
}

void WsClient::Send(const std::string& text) {
  if (!open_) throw std::runtime_error("WebSocket send: the connection is not open");
  bool done = false;
  beast::error_code ec;
  ws_.text(true);
  ws_.async_write(net::buffer(text), [&](beast::error_code e, size_t) {
    ec = e;
    done = true;
  });
  Drive(
      ioc_, done, timeout_, [this] { beast::get_lowest_layer(ws_).close(); }, "WebSocket send");
  if (ec) throw std::runtime_error("WebSocket send: " + ec.message());
}

std::optional<nlohmann::json> WsClient::Next() {
  if (!open_) return std::nullopt;
  bool done = false;
  beast::error_code ec;
  ws_.async_read(buffer_, [&](beast::error_code e, size_t) {
    ec = e;
    done = true;
  });
  Drive(
      ioc_, done, timeout_, [this] { beast::get_lowest_layer(ws_).close(); }, "WebSocket read");
  if (ec) {
    open_ = false;
    return std::nullopt;
  }
  std::string text = beast::buffers_to_string(buffer_.data());
  buffer_.consume(buffer_.size());
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) throw std::runtime_error("WebSocket message is not JSON: " + text);
  return j;
}

nlohmann::json WsClient::Until(const std::string& type, std::vector<nlohmann::json>* skipped) {
  while (auto m = Next()) {
    const std::string got = m->value("type", "");
    if (got == type) return *m;
    if (got == "error") throw std::runtime_error("waiting for \"" + type + "\": " + m->dump());
    if (skipped) skipped->push_back(std::move(*m));
  }
  throw std::runtime_error("WebSocket closed before a \"" + type + "\" message");
}

void WsClient::Close() {
  if (!open_) return;
  bool done = false;
  beast::error_code ec;
  ws_.async_close(websocket::close_code::normal, [&](beast::error_code e) {
    ec = e;
    done = true;
  });
  Drive(
      ioc_, done, timeout_, [this] { beast::get_lowest_layer(ws_).close(); }, "WebSocket close");
  open_ = false;
  if (ec) throw std::runtime_error("WebSocket close: " + ec.message());
}

void WsClient::Drop() {
  beast::error_code ec;
  ec = beast::get_lowest_layer(ws_).socket().shutdown(tcp::socket::shutdown_both, ec);
  beast::get_lowest_layer(ws_).close();
  open_ = false;
}

}  // namespace polyrun::testing
