"""polyrun's Bash session driver (docs/sessions.md), in Python because bash has no JSON.

It keeps one bash alive for the whole session: `bash -i` with job control off, reading lines
from a pipe only this driver writes. Interactive, because an interactive bash is the one that,
on SIGINT, abandons the line it is running (sourced code, functions, loops and all) and goes
back to its prompt, where a non-interactive bash would exit. Its stdout and stderr are the
sandbox's fds 1 and 2. init.bash sets it up; per execution the driver writes the cell to a file
and sends one line, `__pr_cell TOKEN; eval -- "$__pr_code" <IN`. PROMPT_COMMAND runs when
bash is back at its prompt and writes "done TOKEN STATUS" to a FIFO the driver reads, which
covers both the line's end and an interrupt; `read` is wrapped to ask for input on the same
FIFO. Private files live in a fresh directory under $TMPDIR.

Limits: `exit`, `exec PROGRAM` or a failure under `set -e` ends bash; the driver then reports
ShellExited and exits 0, so the host restarts the session. Programs other than `read` that
read stdin see end of file. Messages have no line numbers (bash prints none when
interactive); a syntax error gets its line from `bash -n`. A program that handles SIGINT and
is still running 0.2 s later gets a second one (see execute). A SIGINT that finds bash idle
makes it print an empty line on stderr, as at a terminal.
"""

import json
import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile

BASH = "/usr/bin/bash"
HERE = os.path.dirname(os.path.abspath(__file__))
# Where a word for completion starts: after a blank or a shell metacharacter.
WORD_BREAK = set(" \t\n;|&()<>\"'`=:")
# How long an interrupted cell may take to end before its SIGINT is sent once more (see execute).
RESEND_AFTER = 0.2
COMMAND_WORDS = {"then", "do", "else", "elif", "if", "while", "until", "!", "{", "time"}


class ShellExited(Exception):
    pass


class Driver:
    def __init__(self):
        # The command channel and the frame channel move to close-on-exec descriptors (os.dup's
        # default); /dev/null takes fd 0.
        self.cmd = os.dup(0)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        self.frames = os.dup(3)
        os.close(3)
        self.cmd_buf = b""
        self.status_buf = b""
        self.seq = 0

        # SIGINT reaches the whole process group; the driver only notes it. A Python handler
        # (not SIG_IGN) so that bash starts with the default disposition.
        self.sig_r, sig_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(sig_w)
        signal.signal(signal.SIGINT, lambda *_: None)

        self.dir = tempfile.mkdtemp(prefix="polyrun-bash-")
        open(os.path.join(self.dir, "in"), "w").close()
        os.chmod(os.path.join(self.dir, "in"), 0o444)
        os.mkfifo(os.path.join(self.dir, "status"), 0o600)
        os.mkfifo(os.path.join(self.dir, "reply"), 0o600)
        # Read-write: the open does not wait for a writer and the FIFO never reports EOF.
        self.status = os.open(os.path.join(self.dir, "status"), os.O_RDWR | os.O_NONBLOCK)

        ctl_r, self.ctl = os.pipe2(os.O_CLOEXEC)
        err = os.dup(2)
        env = dict(os.environ, PS1="", PS2="")
        self.bash = subprocess.Popen(
            [BASH, "--noprofile", "--norc", "--noediting", "-i", "+m"],
            stdin=ctl_r, stderr=subprocess.DEVNULL, pass_fds=(err,), env=env)
        os.close(ctl_r)
        os.close(err)
        self.pidfd = os.pidfd_open(self.bash.pid)
        self.send_line(". %s %s %d" % (shlex.quote(os.path.join(HERE, "init.bash")),
                                       shlex.quote(self.dir), err))
        self.wait_done("ready")

    # ---- channels

    def frame(self, obj):
        data = (json.dumps(obj, ensure_ascii=False) + "\n").encode("utf-8", "replace")
        while data:
            data = data[os.write(self.frames, data):]

    def send_line(self, line):
        try:
            os.write(self.ctl, line.encode() + b"\n")
        except BrokenPipeError:
            raise ShellExited() from None

    def write_file(self, name, text):
        with open(os.path.join(self.dir, name), "w", encoding="utf-8", errors="replace") as f:
            f.write(text)

    def read_file(self, name):
        try:
            with open(os.path.join(self.dir, name), encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""  # the user's code removed it

    def take_line(self, attr):
        buf = getattr(self, attr)
        if b"\n" not in buf:
            return None
        line, rest = buf.split(b"\n", 1)
        setattr(self, attr, rest)
        return line

    def wait(self, want_cmd, timeout=None):
        """Blocks until something happens; returns ("cmd", obj) (only when want_cmd), ("eof",
        None), ("status", [words]), ("sigint", None) or ("timeout", None). Raises ShellExited
        when bash is gone."""
        while True:
            if want_cmd and (line := self.take_line("cmd_buf")) is not None:
                try:
                    return "cmd", json.loads(line)
                except ValueError as e:
                    self.frame({"type": "protocol_error", "message": f"bad command: {e}"})
                    continue
            if (line := self.take_line("status_buf")) is not None:
                words = line.decode(errors="replace").split(" ")
                if words[0] == "done" and (len(words) != 3 or not words[2].isdigit()):
                    continue  # not bash's: anything in the sandbox can write to the FIFO
                return "status", words
            fds = [self.status, self.sig_r, self.pidfd] + ([self.cmd] if want_cmd else [])
            ready, _, _ = select.select(fds, [], [], timeout)
            # Checked whatever select says: bash may report a cell that SIGINT ended before the
            # same SIGINT reaches this process, and select then returns only the status FIFO.
            try:
                if os.read(self.sig_r, 64):
                    return "sigint", None
            except BlockingIOError:
                pass
            if not ready:
                return "timeout", None
            if self.status in ready:
                try:
                    self.status_buf += os.read(self.status, 65536)
                except BlockingIOError:
                    pass
            elif self.pidfd in ready:
                raise ShellExited()
            if self.cmd in ready:
                data = os.read(self.cmd, 65536)
                if not data:
                    return "eof", None
                self.cmd_buf += data

    def wait_done(self, token):
        while True:
            kind, words = self.wait(False)
            if kind == "status" and words[:2] == ["done", token]:
                return int(words[2])

    # ---- commands

    def run(self):
        while True:
            try:
                kind, cmd = self.wait(True)
            except ShellExited:
                return
            if kind == "eof":
                return
            if kind != "cmd":
                continue  # an idle SIGINT, or a stale line from one
            t = cmd.get("type") if isinstance(cmd, dict) else None
            try:
                if t == "execute":
                    self.execute(cmd)
                elif t == "complete":
                    self.complete(cmd)
                elif t == "is_complete":
                    self.is_complete(cmd)
                elif t == "inspect":
                    self.frame({"type": "inspect_reply", "id": cmd.get("id"), "found": False,
                                "data": {}})
                elif t == "input_reply":
                    pass  # late: the input's execution was interrupted
                else:
                    self.frame({"type": "protocol_error", "message": f"unknown command {t!r}"})
            except ShellExited:
                return

    def execute(self, cmd):
        self.seq += 1
        token = f"c{self.seq}"
        # A new file per cell: rewriting one in place can cost milliseconds (ext4 flushes a
        # file truncated to zero).
        self.write_file(f"code.{token}", str(cmd.get("code", "")).replace("\0", ""))
        syntax = interrupted = awaiting = resent = False
        try:
            self.send_line(f'__pr_cell {token}; eval -- "$__pr_code" <"$__pr_dir/in"')
            while True:
                kind, words = self.wait(awaiting, RESEND_AFTER if interrupted and not resent
                                        else None)
                if kind == "sigint":
                    if not interrupted:
                        # Should the interrupt land in PROMPT_COMMAND itself, an empty line
                        # makes bash prompt (and report) again; otherwise it is a no-op.
                        self.send_line("")
                    interrupted = True
                elif kind == "timeout":
                    # A SIGINT that reaches bash while it forks a command is held back until
                    # the fork is done: bash notes it, the new child never sees it, and the
                    # cell runs on until the child ends. Sending it once more reaches the child.
                    resent = True
                    os.killpg(os.getpgrp(), signal.SIGINT)
                elif kind == "cmd":
                    if not isinstance(words, dict) or words.get("type") != "input_reply" \
                            or not awaiting:
                        self.frame({"type": "protocol_error",
                                    "message": "busy: only input_reply is accepted now"})
                        continue
                    self.reply(words)
                    awaiting = False
                elif kind == "eof":
                    # The host went away mid-execution: answer a pending read with EOF.
                    if awaiting:
                        self.reply({"eof": True})
                    awaiting = False
                elif words[0] == "input":
                    self.frame({"type": "input_request", "prompt": self.read_file("prompt"),
                                "password": words[1:] == ["1"]})
                    awaiting = True
                elif words[0] == "syntax":
                    syntax = True
                elif words[:2] == ["done", token]:
                    status = int(words[2])
                    break
        except ShellExited:
            rc = self.bash.wait()
            how = f"was killed by signal {-rc}" if rc < 0 else f"exited with status {rc}"
            self.frame({"type": "error", "name": "ShellExited",
                        "message": f"bash {how}; the session ends", "line": None,
                        "column": None, "traceback": []})
            self.frame({"type": "done", "id": cmd.get("id"), "status": "error"})
            raise
        if syntax:
            self.frame(self.syntax_error(f"code.{token}"))
            result = "error"
        elif interrupted and status >= 128:
            self.frame({"type": "error", "name": "Interrupt", "message": "interrupted (SIGINT)",
                        "line": None, "column": None, "traceback": []})
            result = "interrupted"
        elif status != 0:
            self.frame({"type": "error", "name": "ExitCode", "message": f"exit status {status}",
                        "line": None, "column": None, "traceback": []})
            result = "error"
        else:
            result = "ok"
        self.frame({"type": "done", "id": cmd.get("id"), "status": result})
        os.unlink(os.path.join(self.dir, f"code.{token}"))

    def reply(self, cmd):
        try:
            fd = os.open(os.path.join(self.dir, "reply"), os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return  # no read waiting (a forged "input" line)
        try:
            if cmd.get("eof"):
                os.write(fd, b"eof\n")
            else:
                value = str(cmd.get("value", "")).split("\n", 1)[0]
                os.write(fd, b"ok\n" + value.encode("utf-8", "replace") + b"\n")
        finally:
            os.close(fd)

    def syntax_error(self, name):
        """The error frame for a cell that failed to parse. bash -n gives the line (the session's
        interactive bash prints none); its message is the fallback."""
        code = self.read_file(name)
        p = subprocess.run([BASH, "--noprofile", "--norc", "-O", "extglob", "-n"],
                           input=code.encode("utf-8", "replace"), capture_output=True)
        found = re.findall(r"^[^:\n]*: line (\d+): (.*)$", p.stderr.decode(errors="replace"), re.M)
        if found:
            line, message = int(found[0][0]), found[0][1]
            rest = [m for _, m in found[1:]]
        else:
            line, message, rest = None, self.read_file("err").strip(), []
            message = re.sub(r"^bash: (eval: )?", "", message.splitlines()[0] if message else "")
        return {"type": "error", "name": "SyntaxError", "message": message or "syntax error",
                "line": line, "column": None, "traceback": rest}

    def complete(self, cmd):
        code = str(cmd.get("code", ""))
        pos = cmd.get("cursor_pos", len(code))
        pos = max(0, min(pos if isinstance(pos, int) else len(code), len(code)))
        start = pos
        while start > 0 and code[start - 1] not in WORD_BREAK:
            start -= 1
        word = code[start:pos]
        before = code[:start].rstrip(" \t")
        if word.startswith("${"):
            kind, prefix, word = "var", "${", word[2:]
        elif word.startswith("$"):
            kind, prefix, word = "var", "$", word[1:]
        elif "/" not in word and (not before or before[-1] in ";|&(\n"
                                  or before.split()[-1] in COMMAND_WORDS):
            kind, prefix = "cmd", ""
        else:
            kind, prefix = "file", ""
        self.seq += 1
        token = f"q{self.seq}"
        self.write_file(f"word.{token}", word)
        self.send_line(f"__pr_complete {token} {kind}")
        self.wait_done(token)
        os.unlink(os.path.join(self.dir, f"word.{token}"))
        seen = set()
        matches = []
        for m in self.read_file("matches").splitlines():
            if m and m not in seen and not m.startswith("__pr_") and m + "/" not in seen:
                seen.add(m)
                matches.append(prefix + m)
        self.frame({"type": "complete_reply", "id": cmd.get("id"), "matches": sorted(matches),
                    "cursor_start": start, "cursor_end": pos})

    def is_complete(self, cmd):
        code = str(cmd.get("code", ""))
        p = subprocess.run([BASH, "--noprofile", "--norc", "-O", "extglob", "-n"],
                           input=code.encode("utf-8", "replace"), capture_output=True)
        err = p.stderr.decode(errors="replace")
        if re.search(r"unexpected end of file|delimited by end-of-file", err) or \
                re.search(r"(^|[^\\])(\\\\)*\\$", code.rstrip("\n")):
            status = "incomplete"
        elif p.returncode != 0:
            status = "invalid"
        else:
            status = "complete"
        self.frame({"type": "is_complete_reply", "id": cmd.get("id"), "status": status,
                    "indent": ""})

    def close(self):
        if self.bash.poll() is None:
            try:
                self.send_line("builtin exit 0 2>/dev/null")
                self.bash.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.bash.kill()
                self.bash.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def main():
    d = Driver()
    d.frame({"type": "ready"})
    try:
        d.run()
    finally:
        d.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
