#pragma once

#include <boost/beast/http/verb.hpp>
#include <chrono>
#include <expected>
#include <functional>
#include <string>
#include <string_view>

#include "util/error.h"

// The command line's own small HTTP/1.1 client, for the subcommands that talk to `polyrun
// serve` (`polyrun session …`). Synchronous, plain http:// only, one connection per request.
// (tests/server/http_client.* is the tests' client: loopback only, and it throws.)
namespace polyrun::cli {

// http://HOST[:PORT][/PREFIX]: the server's base URL; routes are appended to the prefix.
struct ServerUrl {
  std::string text;    // as the user gave it, for messages
  std::string host;    // a name, an IPv4 address or a bracketed IPv6 address without brackets
  std::string port;    // "80" when the URL has none
  std::string prefix;  // "" or "/path" without a trailing slash
};
// Errc::kInvalidArgument naming what is wrong (https://, no host, a bad port, a query).
Result<ServerUrl> ParseServerUrl(std::string_view url);

struct HttpReply {
  unsigned status = 0;
  std::string content_type;
  std::string body;
};

// Why a request got no reply.
struct HttpFailure {
  enum class Kind {
    kUnreachable,  // the name did not resolve or no connection could be made: nothing was sent
    kBroken,       // the connection failed or timed out after the request was (partly) sent
    kAbandoned,    // the user interrupted twice: the call gave up waiting
  };
  Kind kind = Kind::kBroken;
  std::string message;  // what failed, e.g. "connect: Connection refused"
};

class HttpClient {
 public:
  // `api_key` (may be empty) goes out as `Authorization: Bearer KEY` on every request.
  HttpClient(ServerUrl server, std::string api_key);

  struct Call {
    // Bound on the whole exchange after the connection is made; zero waits for as long as the
    // server takes (the server bounds the work, e.g. an execution's wall time).
    std::chrono::milliseconds timeout{120000};
    // Set: SIGINT/SIGTERM are caught while the call waits. The first one calls this (on the
    // calling thread, between I/O steps: it may make requests with another client) and the
    // call keeps waiting for the reply; a second one abandons the call (kAbandoned).
    std::function<void()> on_interrupt;
  };

  // Sends `method target` (target relative to the URL's prefix, starting with '/') with a JSON
  // `body` (none when empty) and reads the whole reply, whatever its status.
  std::expected<HttpReply, HttpFailure> Request(boost::beast::http::verb method,
                                                std::string_view target, std::string_view body,
                                                const Call& call);
  std::expected<HttpReply, HttpFailure> Request(boost::beast::http::verb method,
                                                std::string_view target,
                                                std::string_view body = "") {
    return Request(method, target, body, Call{});
  }

  const ServerUrl& server() const { return server_; }

 private:
  ServerUrl server_;
  std::string api_key_;
};

// Percent-encodes `s` for use as one path segment (everything but RFC 3986's unreserved
// characters).
std::string EncodePathSegment(std::string_view s);

}  // namespace polyrun::cli
