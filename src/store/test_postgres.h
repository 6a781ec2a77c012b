#pragma once

#include <sys/types.h>

#include <atomic>
#include <memory>
#include <string>

#include "util/error.h"
#include "util/unique_fd.h"

// A private PostgreSQL server for a test run (the store's tests, the server's tests). It
// listens on a unix socket in its own temporary directory only: nothing on the network, no
// clash with another run or with a system cluster.
namespace polyrun::store::pgtest {

class TestPostgres {
 public:
  // initdb in a fresh directory under /tmp, then pg_ctl start. As root, both run as the
  // `postgres` user (PostgreSQL refuses to run as root). Fails with a message saying to run
  // `make setup` when PostgreSQL's server binaries are missing; never skips.
  static Result<std::unique_ptr<TestPostgres>> Start();

  // Stops the server (pg_ctl -m immediate) and removes its directory.
  ~TestPostgres();
  TestPostgres(const TestPostgres&) = delete;
  TestPostgres& operator=(const TestPostgres&) = delete;

  // A new empty database (t_1, t_2, …) and its connection URI, so tests are independent.
  Result<std::string> CreateDatabase();
  // postgresql://polyrun@/DATABASE?host=DIR&port=PORT
  std::string Uri(const std::string& database) const;

 private:
  TestPostgres() = default;
  Result<void> Launch();
  void Stop();

  std::string dir_;  // the server's directory: data/, the socket, logs
  std::string bin_;  // /usr/lib/postgresql/<highest>/bin
  int port_ = 0;     // only names the socket file
  bool as_postgres_ = false;
  // The watchdog: a process that stops the server and removes dir_ if this process dies
  // without doing it (a crash, SIGKILL, a sanitizer abort). Writing a byte tells it all is
  // done; end-of-file (our death) tells it to clean up.
  pid_t watchdog_ = -1;
  UniqueFd watchdog_fd_;
  std::atomic<int> databases_{0};
};

// The server shared by every test of this process: started on first use, stopped by a
// GoogleTest environment when the run ends (whether tests passed or not), and by the watchdog
// should the process die first. A failed start is remembered, so each later test fails fast
// with the same message instead of running initdb again.
Result<TestPostgres*> SharedTestPostgres();

// Runs `sql` on the database `uri` names through a connection of its own and returns the
// first column of the first row ("" when none). For test setup: statements the store itself
// never runs (changing the schema version, terminating connections).
Result<std::string> ExecuteSql(const std::string& uri, const std::string& sql);

}  // namespace polyrun::store::pgtest
