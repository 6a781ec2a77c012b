"""Starts R for polyrun's R session driver (driver.R) and relays its two channels.

R cannot mark a descriptor close-on-exec, so if it held the command channel (fd 0) or the frame
channel (fd 3) itself, every program the user's code starts (system(), pipe(), …) would inherit
both. This relay keeps them instead (close-on-exec) and gives R two FIFOs in a private
directory, which driver.R opens only for the moment it reads a command or writes frames:
while the user's code runs, R holds neither. Bytes pass through unchanged, so the ordering
rule still holds (R writes its stdout before the frame that follows it). R's stdout and stderr
are the sandbox's fds 1 and 2.

Besides the host's commands, the command FIFO carries three lines of the relay's own:
  {"type": "polyrun.sigint"}           SIGINT arrived (a read blocked in R does not see it)
  {"type": "polyrun.file", "path": P}  a command too long for R to read quickly, in file P
  {"type": "polyrun.eof"}              the command channel ended
The relay exits 0 when R does.

usage: relay.py R-COMMAND... (the directory is appended as `--args DIR`)
"""

import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile

# R reads a FIFO one byte per read(2); a longer command goes through a file.
SPILL_OVER = 64 * 1024


def main():
    cmd_in = os.dup(0)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    frames_out = os.dup(3)
    os.close(3)

    # A handler, not SIG_IGN: R must start with SIGINT's default disposition.
    sig_r, sig_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(sig_w)
    signal.signal(signal.SIGINT, lambda *_: None)

    d = tempfile.mkdtemp(prefix="polyrun-r-")
    os.mkfifo(os.path.join(d, "commands"), 0o600)
    os.mkfifo(os.path.join(d, "frames"), 0o600)
    # Read-write opens: they never wait for the other side, and R's opens never wait either.
    to_r = os.open(os.path.join(d, "commands"), os.O_RDWR | os.O_NONBLOCK)
    from_r = os.open(os.path.join(d, "frames"), os.O_RDWR | os.O_NONBLOCK)

    r = subprocess.Popen(sys.argv[1:] + ["--args", d])
    pidfd = os.pidfd_open(r.pid)

    partial = b""  # a command line not complete yet
    pending = b""  # lines waiting for room in the command FIFO
    spills = 0
    eof = False
    try:
        while True:
            readers = [from_r, sig_r, pidfd] + ([] if eof else [cmd_in])
            ready, writable, _ = select.select(readers, [to_r] if pending else [], [])
            if from_r in ready:
                forward(from_r, frames_out)
            if sig_r in ready:
                os.read(sig_r, 64)
                pending += b'{"type": "polyrun.sigint"}\n'
            if cmd_in in ready:
                data = os.read(cmd_in, 1 << 20)
                if data:
                    *lines, partial = (partial + data).split(b"\n")
                    for line in lines:
                        if len(line) > SPILL_OVER:
                            spills += 1
                            path = os.path.join(d, f"command-{spills}.json")
                            with open(path, "wb") as f:
                                f.write(line)
                            line = b'{"type": "polyrun.file", "path": "%s"}' % path.encode()
                        pending += line + b"\n"
                else:
                    eof = True
                    pending += b'{"type": "polyrun.eof"}\n'
            if writable:
                try:
                    pending = pending[os.write(to_r, pending[:65536]):]
                except BlockingIOError:
                    pass
            if pidfd in ready:
                r.wait()
                forward(from_r, frames_out)  # the frames R wrote before it ended
                return
    finally:
        shutil.rmtree(d, ignore_errors=True)


def forward(src, dst):
    while True:
        try:
            data = os.read(src, 1 << 20)
        except BlockingIOError:
            return
        while data:
            data = data[os.write(dst, data):]


if __name__ == "__main__":
    main()
    sys.exit(0)
