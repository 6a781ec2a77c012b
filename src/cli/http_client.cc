#include "cli/http_client.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <csignal>
#include <optional>
#include <stdexcept>

namespace polyrun::cli {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

namespace {

constexpr std::chrono::seconds kConnectTimeout{10};
// Results carry the program's output (bounded by its output limit) and display bundles (PNGs,
// at most 32 MiB each per docs/sessions.md): generous, but a misbehaving peer cannot exhaust
// memory.
constexpr uint64_t kMaxReplyBody = 1ull << 30;

bool AllDigits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (std::isdigit(static_cast<unsigned char>(c)) == 0) return false;
  }
  return true;
}

bool IsUnreserved(unsigned char c) {
  return std::isalnum(c) != 0 || c == '-' || c == '.' || c == '_' || c == '~';
}

// Runs `ioc` until a completion handler sets `done`. The context stops itself whenever it
// runs out of work (after each step), hence the restart. Every step starts an operation whose
// handler sets `done`, so the loop only ends early on a broken invariant.
void RunUntil(net::io_context& ioc, const bool& done) {
  ioc.restart();
  while (!done) {
    if (ioc.run_one() == 0) throw std::logic_error("HTTP client: I/O ended before its handler");
  }
}

}  // namespace

Result<ServerUrl> ParseServerUrl(std::string_view url) {
  ServerUrl out;
  out.text = std::string(url);
  const std::string what = "server URL \"" + out.text + "\": ";
  std::string lower;
  for (char c : url.substr(0, 8)) lower += static_cast<char>(std::tolower(c));
  if (lower.starts_with("https://")) {
    return Fail(Errc::kInvalidArgument, what + "https:// is not supported; give an http:// URL");
  }
  if (!lower.starts_with("http://")) {
    return Fail(Errc::kInvalidArgument, what + "expected http://HOST[:PORT]");
  }
  std::string_view rest = url.substr(7);
  const size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? "" : rest.substr(slash);
  if (path.find_first_of("?#") != std::string_view::npos) {
    return Fail(Errc::kInvalidArgument, what + "a query or fragment is not allowed");
  }
  if (authority.find('@') != std::string_view::npos) {
    return Fail(Errc::kInvalidArgument, what +
                                            "credentials in the URL are not supported (use "
                                            "--api-key or $POLYRUN_API_KEY)");
  }
  std::string_view port;
  if (authority.starts_with('[')) {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      return Fail(Errc::kInvalidArgument, what + "unterminated [IPv6 address]");
    }
    out.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return Fail(Errc::kInvalidArgument, what + "bad host");
      port = after.substr(1);
      if (port.empty()) return Fail(Errc::kInvalidArgument, what + "empty port");
    }
  } else {
    const size_t colon = authority.rfind(':');
    out.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port = authority.substr(colon + 1);
      if (port.empty()) return Fail(Errc::kInvalidArgument, what + "empty port");
    }
  }
  if (out.host.empty()) return Fail(Errc::kInvalidArgument, what + "no host");
  if (!port.empty()) {
    if (!AllDigits(port) || port.size() > 5 || std::stoul(std::string(port)) == 0 ||
        std::stoul(std::string(port)) > 65535) {
      return Fail(Errc::kInvalidArgument, what + "bad port \"" + std::string(port) + "\"");
    }
    out.port = std::string(port);
  } else {
    out.port = "80";
  }
  while (path.ends_with('/')) path.remove_suffix(1);
  out.prefix = std::string(path);
  return out;
}

std::string EncodePathSegment(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (IsUnreserved(c)) {
      out += ch;
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

HttpClient::HttpClient(ServerUrl server, std::string api_key)
    : server_(std::move(server)), api_key_(std::move(api_key)) {}

std::expected<HttpReply, HttpFailure> HttpClient::Request(http::verb method,
                                                          std::string_view target,
                                                          std::string_view body, const Call& call) {
  using Kind = HttpFailure::Kind;
  net::io_context ioc;
  beast::tcp_stream stream(ioc);
  tcp::resolver resolver(ioc);

  // Interrupts: armed for the whole call, so a Ctrl-C while connecting is seen too.
  std::optional<net::signal_set> signals;
  int interrupts = 0;
  bool abandoned = false;
  std::function<void(const beast::error_code&, int)> on_signal = [&](const beast::error_code& ec,
                                                                     int) {
    if (ec) return;  // cancelled: the call is over
    if (++interrupts == 1) {
      call.on_interrupt();
      signals->async_wait(on_signal);
    } else {
      abandoned = true;
      stream.cancel();
      resolver.cancel();
    }
  };
  if (call.on_interrupt) {
    signals.emplace(ioc, SIGINT, SIGTERM);
    signals->async_wait(on_signal);
  }
  auto abandoned_failure = [] {
    return std::unexpected(HttpFailure{Kind::kAbandoned, "interrupted while waiting for a reply"});
  };

  bool done = false;
  beast::error_code ec;
  tcp::resolver::results_type endpoints;
  resolver.async_resolve(server_.host, server_.port,
                         [&](const beast::error_code& e, tcp::resolver::results_type r) {
                           ec = e;
                           endpoints = std::move(r);
                           done = true;
                         });
  RunUntil(ioc, done);
  if (abandoned) return abandoned_failure();
  if (ec) {
    return std::unexpected(
        HttpFailure{Kind::kUnreachable, "resolve " + server_.host + ": " + ec.message()});
  }

  done = false;
  stream.expires_after(kConnectTimeout);
  stream.async_connect(endpoints, [&](const beast::error_code& e, const tcp::endpoint&) {
    ec = e;
    done = true;
  });
  RunUntil(ioc, done);
  if (abandoned) return abandoned_failure();
  if (ec == beast::error::timeout) {
    return std::unexpected(
        HttpFailure{Kind::kUnreachable,
                    "connect: no answer within " + std::to_string(kConnectTimeout.count()) + " s"});
  }
  if (ec) return std::unexpected(HttpFailure{Kind::kUnreachable, "connect: " + ec.message()});

  http::request<http::string_body> req{method, server_.prefix + std::string(target), 11};
  const bool ipv6 = server_.host.find(':') != std::string::npos;
  req.set(http::field::host, (ipv6 ? "[" + server_.host + "]" : server_.host) +
                                 (server_.port == "80" ? "" : ":" + server_.port));
  req.set(http::field::user_agent, "polyrun-cli");
  req.set(http::field::accept, "application/json");
  if (!api_key_.empty()) req.set(http::field::authorization, "Bearer " + api_key_);
  if (!body.empty()) req.set(http::field::content_type, "application/json");
  req.body() = std::string(body);
  req.keep_alive(false);
  req.prepare_payload();
  if (call.timeout.count() > 0) {
    stream.expires_after(call.timeout);
  } else {
    stream.expires_never();
  }

  done = false;
  beast::error_code write_ec;
  http::async_write(stream, req, [&](const beast::error_code& e, size_t) {
    write_ec = e;
    done = true;
  });
  RunUntil(ioc, done);
  if (abandoned) return abandoned_failure();
  // Even when the write failed the server may have answered (a refusal sent before it read the
  // whole body): read what it said.
  http::response_parser<http::string_body> parser;
  parser.body_limit(kMaxReplyBody);
  beast::flat_buffer buffer;
  done = false;
  http::async_read(stream, buffer, parser, [&](const beast::error_code& e, size_t) {
    ec = e;
    done = true;
  });
  RunUntil(ioc, done);
  if (abandoned) return abandoned_failure();
  if (ec) {
    std::string message = ec == beast::error::timeout
                              ? "no reply within " + std::to_string(call.timeout.count()) + " ms"
                              : ec.message();
    if (write_ec) message += " (sending the request: " + write_ec.message() + ")";
    return std::unexpected(HttpFailure{Kind::kBroken, std::move(message)});
  }
  beast::error_code ignored;
  ignored = stream.socket().shutdown(tcp::socket::shutdown_both, ignored);  // best effort
  auto res = parser.release();
  HttpReply reply;
  reply.status = res.result_int();
  reply.content_type = std::string(res[http::field::content_type]);
  reply.body = std::move(res.body());
  return reply;
}

}  // namespace polyrun::cli
