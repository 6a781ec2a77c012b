#include "jupyter/kernel.h"

#include <fcntl.h>
#include <fnmatch.h>
#include <poll.h>
#include <pthread.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <csignal>
#include <deque>
#include <functional>
#include <future>
#include <iostream>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <xeus/xhelper.hpp>
#include <xeus/xhistory_manager.hpp>
#include <xeus/xinput.hpp>
#include <xeus/xinterpreter.hpp>
#include <xeus/xkernel.hpp>
#include <xeus/xkernel_configuration.hpp>
#include <xeus/xserver_zmq.hpp>
#include <zmq.hpp>

#include "engine/session.h"
#include "engine/session_manager.h"
#include "jupyter/kernelspec.h"
#include "util/files.h"
#include "util/unique_fd.h"

namespace polyrun::jupyter {

namespace {

using engine::Event;
using engine::ExecutionResult;
using engine::Session;
using engine::Status;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

// A kernel lives as long as its notebook is open; the session inside ends after this and the
// next cell starts a fresh one.
constexpr std::chrono::milliseconds kSessionLifetime = std::chrono::hours(24);
constexpr std::chrono::milliseconds kStartTimeout = std::chrono::seconds(30);
// complete/inspect/is_complete wait this long for a busy session, then answer "nothing".
constexpr std::chrono::milliseconds kQueryTimeout = std::chrono::seconds(5);

// Jupyter interrupts a kernel with SIGINT. Every thread blocks it (BlockInterruptsForKernel,
// before any thread exists) and RunKernel takes it from a signalfd; the sandbox gives each driver
// a clean signal state of its own, so the block does not reach the code it runs.
void SetSigint(int how) {
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGINT);
  pthread_sigmask(how, &s, nullptr);
}

// The one thread that starts, restarts, runs and closes the session; the xeus thread publishes
// what it reports (a session's sink must not block or call back into the session).
class SessionThread {
 public:
  SessionThread() {
    thread_ = std::thread([this] { Loop(); });
  }
  ~SessionThread() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  SessionThread(const SessionThread&) = delete;
  SessionThread& operator=(const SessionThread&) = delete;

  void Post(std::function<void()> task) {
    {
      std::lock_guard lock(mu_);
      tasks_.push_back(std::move(task));
    }
    cv_.notify_all();
  }

  // Runs `f` on the session thread and returns its value.
  template <class F>
  auto Call(F f) -> decltype(f()) {
    std::packaged_task<decltype(f())()> task(std::move(f));
    auto done = task.get_future();
    Post([&task] { task(); });
    return done.get();
  }

 private:
  void Loop() {
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return stopping_ || !tasks_.empty(); });
      if (tasks_.empty()) return;  // stopping, nothing left
      auto task = std::move(tasks_.front());
      tasks_.pop_front();
      lock.unlock();
      task();
      lock.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;
  std::thread thread_;
};

// Everything the interpreter and the interrupt thread share.
struct KernelState {
  engine::Engine& engine;
  engine::SessionLaunch launch;
  json language_info;
  std::string banner;
  SessionThread worker;

  std::mutex mu;
  std::shared_ptr<Session> session;  // replaced when its lifetime ends

  std::shared_ptr<Session> Current() {
    std::lock_guard lock(mu);
    return session;
  }
  // On the session thread.
  Result<std::shared_ptr<Session>> StartSession() {
    return worker.Call([this] {
      return Session::Start(engine.sandbox(), launch, engine::NewSessionId(), nullptr,
                            kStartTimeout);
    });
  }
};

// The length of the longest prefix of `s` that does not end inside a UTF-8 sequence: output
// arrives in arbitrary chunks, and a stream message must carry whole characters.
size_t CompleteUtf8Prefix(std::string_view s) {
  size_t i = s.size();
  size_t back = 0;
  while (i > 0 && back < 4) {
    const auto c = static_cast<unsigned char>(s[i - 1]);
    if ((c & 0xC0) != 0x80) {  // a lead byte (or ASCII): is its sequence complete?
      const size_t need = c < 0x80           ? 1
                          : (c >> 5) == 0x6  ? 2
                          : (c >> 4) == 0xE  ? 3
                          : (c >> 3) == 0x1E ? 4
                                             : 1;
      return back + 1 >= need ? s.size() : i - 1;
    }
    --i;
    ++back;
  }
  return s.size();  // not UTF-8 at the end anyway: send as is (xeus replaces bad bytes)
}

// An execute_reply for an error. Not xeus::create_error_reply: xeus 2.4.1 swaps its ename and
// evalue.
json ErrorReply(const std::string& ename, const std::string& evalue,
                const std::vector<std::string>& traceback) {
  return {{"status", "error"}, {"ename", ename}, {"evalue", evalue}, {"traceback", traceback}};
}

// Jupyter's traceback lines for an error: the user's frames, outermost first, then the error.
std::vector<std::string> TracebackLines(const std::string& ename, const std::string& evalue,
                                        const std::optional<languages::ErrorInfo>& error) {
  std::vector<std::string> lines;
  if (error) {
    for (const auto& f : error->traceback) {
      if (f.line <= 0) {  // a driver's preformatted line (docs/sessions.md: plain strings)
        lines.push_back(f.function);
        continue;
      }
      std::string line = "  Cell line " + std::to_string(f.line);
      if (!f.function.empty()) line += ", in " + f.function;
      lines.push_back(line);
    }
    if (error->traceback.empty() && error->line > 0) {
      lines.push_back("  Cell line " + std::to_string(error->line));
    }
  }
  lines.push_back(evalue.empty() ? ename : ename + ": " + evalue);
  return lines;
}

// The kernel's history (history_request). Not xeus::make_in_memory_history_manager: in xeus
// 2.4.1 its entries break the message spec (session and line numbers as strings, a fourth
// element, every line numbered 1), which Jupyter's own clients reject.
class History : public xeus::xhistory_manager {
 private:
  struct Entry {
    int session, line;
    std::string input, output;
  };
  void configure_impl() override {}
  // Lines are numbered here, from 1: xeus 2.4.1 passes 1 for every cell.
  void store_inputs_impl(int session, int /*line*/, const std::string& input,
                         const std::string& output) override {
    entries_.push_back({session, static_cast<int>(entries_.size()) + 1, input, output});
  }
  static json Row(const Entry& e, bool output) {
    if (output) return json::array({e.session, e.line, json::array({e.input, e.output})});
    return json::array({e.session, e.line, e.input});
  }
  static json Reply(json rows) { return {{"status", "ok"}, {"history", std::move(rows)}}; }
  json get_tail_impl(int n, bool /*raw*/, bool output) const override {
    json rows = json::array();
    const size_t from = n > 0 && static_cast<size_t>(n) < entries_.size()
                            ? entries_.size() - static_cast<size_t>(n)
                            : 0;
    for (size_t i = from; i < entries_.size(); ++i) rows.push_back(Row(entries_[i], output));
    return Reply(std::move(rows));
  }
  json get_range_impl(int session, int start, int stop, bool /*raw*/, bool output) const override {
    json rows = json::array();
    for (const Entry& e : entries_) {
      if (e.session == session && e.line >= start && e.line < stop) rows.push_back(Row(e, output));
    }
    return Reply(std::move(rows));
  }
  // The last `n` (all when n <= 0) inputs matching the glob `pattern`; `unique` keeps each
  // input once, at its latest position.
  json search_impl(const std::string& pattern, bool /*raw*/, bool output, int n,
                   bool unique) const override {
    std::vector<const Entry*> hits;
    std::set<std::string> seen;
    for (auto it = entries_.rbegin(); it != entries_.rend(); ++it) {
      if (n > 0 && hits.size() >= static_cast<size_t>(n)) break;
      if (::fnmatch(pattern.c_str(), it->input.c_str(), 0) != 0) continue;
      if (unique && !seen.insert(it->input).second) continue;
      hits.push_back(&*it);
    }
    json rows = json::array();
    for (auto it = hits.rbegin(); it != hits.rend(); ++it) rows.push_back(Row(**it, output));
    return Reply(std::move(rows));
  }
  std::vector<Entry> entries_;
};

class Interpreter : public xeus::xinterpreter {
 public:
  // Registered as xeus' global interpreter: xeus::blocking_input_request goes through it.
  explicit Interpreter(KernelState& state) : state_(state) { xeus::register_interpreter(this); }

 private:
  void configure_impl() override {}

  json execute_request_impl(int execution_counter, const std::string& code, bool silent,
                            bool /*store_history*/, json /*user_expressions*/,
                            bool allow_stdin) override {
    auto session = state_.Current();
    if (session->info().state == Session::State::kDead) {
      // The session outlived its lifetime (or its driver could not restart): a new one.
      const std::string why = session->info().ended_reason;
      auto fresh = state_.StartSession();
      if (!fresh) {
        return FailCell("polyrun", "the session ended (" + why +
                                       ") and a new one did not start: " + fresh.error().message());
      }
      {
        std::lock_guard lock(state_.mu);
        state_.session = *fresh;
      }
      session = *fresh;
      if (!silent) {
        publish_stream("stderr", "[polyrun: the session ended (" + why +
                                     "); this cell runs in a new one, earlier state is gone]\n");
      }
    }

    // Answers to input requests travel through a pipe the execution reads one line from.
    UniqueFd in_r, in_w;
    if (allow_stdin) {
      int fds[2];
      if (::pipe2(fds, O_CLOEXEC) != 0) return FailCell("polyrun", "pipe2 failed");
      in_r = UniqueFd(fds[0]);
      in_w = UniqueFd(fds[1]);
    }
    engine::ExecutionRequest req;
    req.code = code;
    req.stdin_fd = allow_stdin ? in_r.get() : -1;

    // The execution runs on the session thread; its events come back here, where they are
    // published: xeus' sockets are used from this thread only.
    struct Shared {
      std::mutex mu;
      std::condition_variable cv;
      std::deque<Event> events;
      bool done = false;
      ExecutionResult result;
    };
    auto shared = std::make_shared<Shared>();
    state_.worker.Post([shared, session, req] {
      auto result = session->Execute(req, [&shared](const Event& e) {
        if (e.kind != Event::Kind::kStdout && e.kind != Event::Kind::kStderr &&
            e.kind != Event::Kind::kDisplay && e.kind != Event::Kind::kStatus) {
          return;
        }
        {
          std::lock_guard lock(shared->mu);
          shared->events.push_back(e);
        }
        shared->cv.notify_all();
      });
      {
        std::lock_guard lock(shared->mu);
        shared->result = std::move(result);
        shared->done = true;
      }
      shared->cv.notify_all();
    });

    std::string pending[2];  // stdout, stderr: an incomplete UTF-8 sequence held back
    auto stream = [&](int which, const std::string& data, bool flush) {
      std::string& buf = pending[which];
      buf += data;
      const size_t n = flush ? buf.size() : CompleteUtf8Prefix(buf);
      if (n == 0) return;
      if (!silent) publish_stream(which == 0 ? "stdout" : "stderr", buf.substr(0, n));
      buf.erase(0, n);
    };
    for (;;) {
      std::deque<Event> batch;
      bool done = false;
      {
        std::unique_lock lock(shared->mu);
        shared->cv.wait(lock, [&] { return shared->done || !shared->events.empty(); });
        batch.swap(shared->events);
        done = shared->done;
      }
      for (const Event& e : batch) {
        switch (e.kind) {
          case Event::Kind::kStdout:
            stream(0, e.data, false);
            break;
          case Event::Kind::kStderr:
            stream(1, e.data, false);
            break;
          case Event::Kind::kDisplay:
            stream(0, "", true);
            stream(1, "", true);
            if (!silent) {
              display_data(e.payload.value("data", json::object()),
                           e.payload.value("metadata", json::object()), json::object());
            }
            break;
          case Event::Kind::kStatus:
            if (in_w.valid() && e.payload.contains("input_request")) {
              const json& ir = e.payload["input_request"];
              stream(0, "", true);
              stream(1, "", true);
              std::string answer =
                  xeus::blocking_input_request(ir.value("prompt", ""), ir.value("password", false));
              answer += "\n";
              (void)WriteAll(in_w.get(), answer.data(), answer.size());
            }
            break;
          default:
            break;
        }
      }
      if (done) break;
    }
    stream(0, "", true);
    stream(1, "", true);

    const ExecutionResult& r = shared->result;
    if (!silent && !r.result.is_null() && r.result.is_object()) {
      publish_execution_result(execution_counter, r.result, json::object());
    }
    if (r.status == Status::kOk) return xeus::create_successful_reply();
    // The driver's error when the code raised or was interrupted; polyrun's own reason when a
    // limit or the session ended the cell.
    std::string ename, evalue;
    if (r.error && (r.status == Status::kRuntimeError || r.status == Status::kCancelled)) {
      ename = r.error->name;
      evalue = r.error->message;
    } else {
      ename = std::string(engine::StatusName(r.status));
      evalue = r.reason;
    }
    auto traceback = TracebackLines(ename, evalue, r.error);
    if (!silent) publish_execution_error(ename, evalue, traceback);
    return ErrorReply(ename, evalue, traceback);
  }

  // An error that is polyrun's, not the cell's: shown like one.
  json FailCell(const std::string& ename, const std::string& evalue) {
    publish_execution_error(ename, evalue, {ename + ": " + evalue});
    return ErrorReply(ename, evalue, {ename + ": " + evalue});
  }

  Result<json> Query(json command) {
    return state_.Current()->Query(std::move(command), kQueryTimeout);
  }

  json complete_request_impl(const std::string& code, int cursor_pos) override {
    auto reply = Query({{"type", "complete"}, {"code", code}, {"cursor_pos", cursor_pos}});
    if (!reply) return xeus::create_complete_reply(json::array(), cursor_pos, cursor_pos);
    return xeus::create_complete_reply(reply->value("matches", json::array()),
                                       reply->value("cursor_start", cursor_pos),
                                       reply->value("cursor_end", cursor_pos));
  }

  json inspect_request_impl(const std::string& code, int cursor_pos,
                            int /*detail_level*/) override {
    auto reply = Query({{"type", "inspect"}, {"code", code}, {"cursor_pos", cursor_pos}});
    if (!reply) return xeus::create_inspect_reply(false);
    return xeus::create_inspect_reply(reply->value("found", false),
                                      reply->value("data", json::object()));
  }

  json is_complete_request_impl(const std::string& code) override {
    auto reply = Query({{"type", "is_complete"}, {"code", code}});
    if (!reply) return xeus::create_is_complete_reply("unknown");
    return xeus::create_is_complete_reply(reply->value("status", "unknown"),
                                          reply->value("indent", ""));
  }

  json kernel_info_request_impl() override {
    const json& li = state_.language_info;
    json reply = xeus::create_info_reply("5.3", "polyrun", POLYRUN_VERSION, li["name"],
                                         li["version"], li["mimetype"], li["file_extension"],
                                         li["pygments_lexer"], "", "", state_.banner);
    // create_info_reply takes codemirror_mode as a string; Python's is an object.
    reply["language_info"]["codemirror_mode"] = li["codemirror_mode"];
    reply["language_info"].erase("nbconvert_exporter");
    if (li["name"] == "python") reply["language_info"]["nbconvert_exporter"] = "python";
    return reply;
  }

  void shutdown_request_impl() override {
    // A restart is Jupyter starting a new kernel process after this one exits: its session is
    // new too, so there is nothing to restart in place.
    auto session = state_.Current();
    state_.worker.Call([&] { session->Close("the kernel was shut down"); });
    // xeus ends the process with exit(0) once it has replied, without unwinding RunKernel's
    // stack: the engine's destructor, which would wait for the session's teardown, never runs.
    // Without this wait its cgroup was left behind about every other shutdown.
    if (auto settled = state_.engine.sandbox().Settle(); !settled) {
      std::cerr << "polyrun kernel: " << settled.error().message() << "\n";
    }
  }

  KernelState& state_;
};

}  // namespace

void BlockInterruptsForKernel() {
  SetSigint(SIG_BLOCK);
}

Result<void> RunKernel(engine::Engine& engine, const KernelOptions& options) {
  engine::SessionRequest request;
  request.language = options.language;
  request.limits = options.limits;
  auto launch = engine.PrepareSession(request, kSessionLifetime);
  if (!launch) return std::unexpected(launch.error());
  const languages::LanguageEntry* entry = engine.registry().Find(launch->language);
  if (entry == nullptr || !entry->language) {
    return Fail(Errc::kNotFound, "language: " + options.language + " is not known");
  }

  xeus::xconfiguration config;
  try {
    config = xeus::load_configuration(options.connection_file);
  } catch (const std::exception& e) {
    return Fail(Errc::kInvalidArgument,
                "-f: cannot read the connection file " + options.connection_file + ": " + e.what());
  }

  sigset_t sigint;
  sigemptyset(&sigint);
  sigaddset(&sigint, SIGINT);
  UniqueFd interrupts(::signalfd(-1, &sigint, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!interrupts.valid()) return SysFail("signalfd", "SIGINT");
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return SysFail("pipe2", "interrupter stop pipe");
  UniqueFd stop_r(fds[0]), stop_w(fds[1]);

  const std::string version = launch->version;
  const std::string name = entry->language->name;
  KernelState state{.engine = engine,
                    .launch = std::move(*launch),
                    .language_info = LanguageInfoFor(*entry->language, version),
                    .banner = name + " " + version + " in a polyrun sandbox",
                    .worker = {},
                    .mu = {},
                    .session = nullptr};
  auto session = state.StartSession();
  Result<void> outcome;
  if (!session) {
    outcome = std::unexpected(session.error());
  } else {
    state.session = *session;
    // Turns each SIGINT into an interrupt of the running cell (an idle session has nothing to
    // interrupt, which is fine) until the stop pipe closes.
    std::thread interrupter([&] {
      for (;;) {
        pollfd p[2] = {{interrupts.get(), POLLIN, 0}, {stop_r.get(), POLLIN, 0}};
        if (::poll(p, 2, -1) < 0 && errno != EINTR) return;
        if (p[1].revents != 0) return;
        signalfd_siginfo info[8];
        if (::read(interrupts.get(), info, sizeof info) > 0) {
          // Fails only when no cell is running: then there is nothing to interrupt.
          [[maybe_unused]] auto interrupted = state.Current()->Interrupt();
        }
      }
    });
    try {
      auto context = xeus::make_context<zmq::context_t>();
      auto interpreter = std::make_unique<Interpreter>(state);
      // Output is arbitrary bytes: invalid UTF-8 becomes U+FFFD rather than an exception.
      xeus::xkernel kernel(config, xeus::get_user_name(), std::move(context),
                           std::move(interpreter), xeus::make_xserver_zmq,
                           std::make_unique<History>(), nullptr, xeus::make_null_debugger,
                           json::object(), json::error_handler_t::replace);
      // Returns only if xeus fails: after a shutdown request it ends the process itself
      // (shutdown_request_impl settles first). What follows is for that failure.
      kernel.start();
    } catch (const std::exception& e) {
      outcome = Fail(Errc::kInternal, std::string("the kernel failed: ") + e.what());
    }
    stop_w.reset();
    interrupter.join();
    state.worker.Call([&] { state.Current()->Close("the kernel exited"); });
    state.session.reset();
  }
  return outcome;
}

}  // namespace polyrun::jupyter
