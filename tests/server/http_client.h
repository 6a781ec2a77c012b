#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/verb.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <chrono>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

// A small synchronous HTTP/1.1, Server-Sent Events and WebSocket client for the server's
// tests, talking to 127.0.0.1 over real sockets. Every call is bounded by the client's timeout;
// a call that exceeds it, or a transport failure, throws std::runtime_error (gtest reports it
// as a failure of the test that made the call).
namespace polyrun::testing {

using Headers = std::vector<std::pair<std::string, std::string>>;

struct HttpReply {
  unsigned status = 0;
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;

  // The header's value, "" when absent; `name` in any case.
  std::string Header(std::string_view name) const;
  // The body as JSON; throws when it is not JSON.
  nlohmann::json Json() const;
};

// One keep-alive connection, reconnecting when the server has closed it.
class HttpClient {
 public:
  explicit HttpClient(uint16_t port,
                      std::chrono::milliseconds timeout = std::chrono::milliseconds(120000));
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  HttpReply Request(boost::beast::http::verb method, const std::string& target,
                    const std::string& body = "", const Headers& headers = {});
  HttpReply Get(const std::string& target, const Headers& headers = {}) {
    return Request(boost::beast::http::verb::get, target, "", headers);
  }
  HttpReply Post(const std::string& target, const std::string& body, const Headers& headers = {}) {
    return Request(boost::beast::http::verb::post, target, body, headers);
  }
  HttpReply Post(const std::string& target, const nlohmann::json& body,
                 const Headers& headers = {}) {
    return Post(target, body.dump(), headers);
  }

  // How many TCP connections this client has opened so far.
  int connections() const { return connections_; }

 private:
  void Connect();
  void Disconnect();
  uint16_t port_;
  std::chrono::milliseconds timeout_;
  boost::asio::io_context ioc_;
  boost::beast::tcp_stream stream_;
  boost::beast::flat_buffer buffer_;
  bool connected_ = false;
  int connections_ = 0;
};

struct SseEvent {
  std::string id;     // the `id:` line
  std::string event;  // the `event:` line
  std::string data;   // the `data:` lines, joined by "\n"
  nlohmann::json Json() const;
};

// GET `target` as an event stream. The constructor returns once the response head is read;
// a response that is not a stream (an error) is read whole into head().body.
class SseStream {
 public:
  SseStream(uint16_t port, const std::string& target, const Headers& headers = {},
            std::chrono::milliseconds timeout = std::chrono::milliseconds(120000));
  ~SseStream();
  SseStream(const SseStream&) = delete;
  SseStream& operator=(const SseStream&) = delete;

  const HttpReply& head() const { return head_; }
  // The next event; nullopt once the server has ended the stream.
  std::optional<SseEvent> Next();
  // Every event up to the end of the stream.
  std::vector<SseEvent> ReadToEnd();
  // Reads until an event of kind `event` (returned); the events before it are appended to
  // `skipped` when given. Throws if the stream ends first.
  SseEvent Until(const std::string& event, std::vector<SseEvent>* skipped = nullptr);

 private:
  // Reads more bytes into pending_; false at the end of the stream.
  bool Fill();
  std::chrono::milliseconds timeout_;
  boost::asio::io_context ioc_;
  boost::beast::tcp_stream stream_;
  HttpReply head_;
  std::string pending_;
  bool ended_ = false;
};

// A WebSocket client connection.
class WsClient {
 public:
  // Connects and upgrades; when the server refuses the upgrade, refused() is set and
  // refusal() holds its response.
  WsClient(uint16_t port, const std::string& target = "/v1/ws", const Headers& headers = {},
           std::chrono::milliseconds timeout = std::chrono::milliseconds(120000));
  ~WsClient();
  WsClient(const WsClient&) = delete;
  WsClient& operator=(const WsClient&) = delete;

  bool refused() const { return refused_; }
  // The code of the server's close frame once Next() has returned nullopt (0: none).
  uint16_t close_code() const { return ws_.reason().code; }
  const HttpReply& refusal() const { return refusal_; }

  void Send(const std::string& text);
  void Send(const nlohmann::json& message) { Send(message.dump()); }
  // The next message as JSON; nullopt once the server has closed the connection.
  std::optional<nlohmann::json> Next();
  // Reads until a message whose "type" is `type` (returned); others go to `skipped`. An
  // "error" message while waiting for another type throws (it names what went wrong).
  nlohmann::json Until(const std::string& type, std::vector<nlohmann::json>* skipped = nullptr);
  // The close handshake, initiated by the client.
  void Close();
  // Closes the TCP connection without a close frame (a client that vanished).
  void Drop();

 private:
  std::chrono::milliseconds timeout_;
  boost::asio::io_context ioc_;
  boost::beast::websocket::stream<boost::beast::tcp_stream> ws_;
  boost::beast::flat_buffer buffer_;
  bool refused_ = false;
  bool open_ = false;
  HttpReply refusal_;
};

}  // namespace polyrun::testing
