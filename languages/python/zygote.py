"""polyrun's fork server for Python (docs/performance.md, "Zygotes").

Runs as the program of a sandbox built for it (Sandbox::StartZygote): uid 1000 of the
sandbox's user namespace, keeping CAP_SYS_ADMIN, CAP_NET_ADMIN and CAP_SETPCAP there (and no
other capability, nowhere else), under a seccomp profile that adds unshare, setns, mount and
capset to the default one. It never runs user code and never holds a run's data: only
descriptors and limits pass through it, so no run can leave anything here for the next.

Protocol on fd 3 (SOCK_SEQPACKET): the host sends the runs' seccomp filter (raw sock_filter
array); we answer b"R" once ready. Then each message is a JSON object with descriptors:

  {"work": bytes, "tmp": bytes, "rlimits": [[resource, soft, hard], ...]} with
      [stdin, stdout, stderr, status, cgroup files...]: a run, forked now;
  {"ahead": true, "id": n, "work": bytes, "tmp": bytes} with [stdin, stdout, stderr, status]:
      a run's namespaces and init made ahead of need, kept under its id;
  {"go": n, "rlimits": [...]} with the cgroup files: the run for the one made ahead as n;
  {"drop": n}: the host will not use n (and has killed its init): its descriptors go.

Each run's namespaces and its init (G) are made by F, polyrun-zygote-factory, a small native
process started once (src/sandbox/zygote_factory.cc says how): forking this interpreter costs a
copy of its page tables, then of each page either side writes, so we fork only the program:

  H  is forked into G's PID namespace (setns of pid_for_children around the fork), joins the
     run's cgroup (writes "0" to each cgroup file, opened by the host), enters G's network
     namespace, then its user, mount, IPC and UTS namespaces, makes a cgroup
     namespace rooted in the run's cgroup, sets the run's rlimits, drops every capability for
     good (bounding set, ambient, securebits locked), sets no_new_privs, loads the run's seccomp
     filter, closes every other descriptor and returns to the bottom of this file, which runs
     the program like warm.py does. It is PID 2 there; its parent (we) is outside, so
     os.getppid() is 0.
  We report H's wait status on the run's status socket as an InitReport when we reap it, and
     close the socket: the run's end. G, PID 1 there, reaps orphans and forwards signals until
     the host kills it.

Forked runs share what the zygote had before any run: its modules, its address-space layout
and its string-hash secret (docs/performance.md says what that means).
"""

import ctypes
import gc
import importlib.util
import json
import os
import resource
import select
import signal
import socket
import struct
import sys

# Modules a typical program imports, loaded once here: pure code without per-process state.
# (random reseeds itself in every forked child; nothing here opens files or threads.)
import collections, dataclasses, datetime, decimal, functools, itertools, math  # noqa: E401,F401
import re, string, textwrap, typing  # noqa: E401,F401

_spec = importlib.util.spec_from_file_location(
    "_polyrun_warm", os.path.join(os.path.dirname(os.path.abspath(__file__)), "warm.py")
)
_warm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_warm)

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
CLONE_NEWUSER, CLONE_NEWCGROUP = 0x10000000, 0x02000000
PR_SET_DUMPABLE, PR_SET_SECCOMP, PR_CAPBSET_DROP, PR_SET_SECUREBITS = 4, 22, 24, 28
PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 38, 47, 4
SECCOMP_MODE_FILTER = 2
# NOROOT, NO_SETUID_FIXUP, KEEP_CAPS_LOCKED and NO_CAP_AMBIENT_RAISE, each with its lock.
SECUREBITS_LOCKED = 0x01 | 0x02 | 0x04 | 0x08 | 0x20 | 0x40 | 0x80
SYS_CAPSET, SYS_CLOSE_RANGE = 126, 436
INIT_MAGIC, KIND_EXITED, KIND_SETUP_FAILED = 0x706F6C79, 1, 2

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class _SetupError(Exception):
    def __init__(self, what, err):
        super().__init__(what)
        self.what, self.err = what, err


def _check(rc, what):
    if rc < 0:
        raise _SetupError(what, ctypes.get_errno())
    return rc


def _report(fd, kind, status=0, err=0, what=""):
    """An InitReport (sandbox/child_plan.h) on the status socket."""
    data = struct.pack("<IIii240s", INIT_MAGIC, kind, status, err, what.encode()[:239])
    try:
        os.write(fd, data)
    except OSError:
        pass


def _drop_privileges(fprog):
    """For good, in H: no capability in any set, no way back, then the run's seccomp filter."""
    _check(_libc.prctl(PR_SET_SECUREBITS, SECUREBITS_LOCKED, 0, 0, 0), "prctl PR_SET_SECUREBITS")
    # The run's new user namespace started with a full bounding set: all of it goes.
    for cap in range(64):
        if _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 and ctypes.get_errno() != 22:
            raise _SetupError("prctl PR_CAPBSET_DROP", ctypes.get_errno())
    _check(_libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "prctl PR_CAP_AMBIENT")
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)
    data = (ctypes.c_uint32 * 6)()
    _check(_libc.syscall(SYS_CAPSET, header, data), "capset")
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl PR_SET_NO_NEW_PRIVS")
    # Dumpable again, as a program execve'd by the cold path is: /proc/self is its own.
    _check(_libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "prctl PR_SET_DUMPABLE")
    _check(
        _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0),
        "prctl PR_SET_SECCOMP",
    )


def _program(run, fprog):
    """H, in the run's namespaces: the program's own process state, privileges dropped."""
    signal.set_wakeup_fd(-1)  # the server's: its descriptor is about to close
    os.setpgid(0, 0)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the server's reaper: the program's are its own
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    for res, soft, hard in run["rlimits"]:
        resource.setrlimit(res, (soft, hard))
    if _libc.syscall(SYS_CLOSE_RANGE, 3, 0xFFFFFFFF, 0) < 0:
        os.closerange(3, 1 << 20)
    os.chdir("/work")
    _drop_privileges(fprog)


def _join_cgroup(cgroup_files):
    """H: moves itself into the run's cgroup: "0" to each control file the host opened. G stays
    in ours: moving it too cost each run a second migration, and the tail a synchronize_rcu
    (docs/performance.md)."""
    for fd in cgroup_files:
        os.write(fd, b"0")
        os.close(fd)


FACTORY = "/polyrun/zygote-factory"  # bound there by Sandbox::StartZygote
# The run's namespaces as the factory hands them over (zygote_factory.cc, kRunNamespaceFiles),
# each with what setns enters. H enters all but the last, which the fork itself enters.
_RUN_NAMESPACES = (("net", CLONE_NEWNET), ("user", CLONE_NEWUSER), ("mnt", CLONE_NEWNS),
                   ("ipc", CLONE_NEWIPC), ("uts", CLONE_NEWUTS),
                   ("pid_for_children", CLONE_NEWPID))
_running = {}  # pid of H -> its run's status socket, until its report
_factory_pid = 0


def _reap_children():
    """Reports each program's end; F's end is ours."""
    while True:
        try:
            pid, st = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        status = _running.pop(pid, None)
        if status is not None:
            _report(status, KIND_EXITED, st)
            os.close(status)  # the host's end of the run
        elif pid == _factory_pid:
            os.write(2, b"polyrun zygote: the namespace factory ended\n")
            os._exit(70)


def _start_factory():
    """F, on a SOCK_SEQPACKET socket of its own as its fd 3."""
    global _factory_pid
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(theirs.fileno(), 3)  # in place of our control socket; kept across exec
            os.execv(FACTORY, [FACTORY])
        finally:
            os._exit(127)
    theirs.close()
    _factory_pid = pid
    return ours


def _make_namespaces(factory, run, status):
    """The run's namespaces once they and G are complete, or None (the status socket says why):
    descriptors of its network, user, mount, IPC, UTS and PID (for children) namespaces."""
    socket.send_fds(factory, [struct.pack("<QQ", int(run["work"]), int(run["tmp"]))], [status])
    answer, fds, _, _ = socket.recv_fds(factory, 16, len(_RUN_NAMESPACES))
    if answer == b"G" and len(fds) == len(_RUN_NAMESPACES):
        return fds
    for fd in fds:
        os.close(fd)
    if not answer:
        sys.exit("polyrun zygote: the namespace factory ended")
    # F's child reported why first; this report only covers its dying without one.
    _report(status, KIND_SETUP_FAILED, 0, 0, "zygote: the run's namespaces could not be made")
    return None


def _become_program(run, stdio, cgroup_files, ns, fprog):
    """H, right after the fork: enters the run's namespaces. Returns as the run's program."""
    try:
        for fd, target in zip(stdio, (0, 1, 2)):
            os.dup2(fd, target)
        _join_cgroup(cgroup_files)
        # The network namespace belongs to the server's user namespace: entered from it. The
        # others belong to the run's user namespace, where entering it gives us the right.
        for fd, (name, kind) in zip(ns[:-1], _RUN_NAMESPACES[:-1]):
            _check(_libc.setns(fd, kind), "setns " + name)
        _check(_libc.unshare(CLONE_NEWCGROUP), "unshare CLONE_NEWCGROUP")
        _program(run, fprog)
    except BaseException as e:  # noqa: BLE001: never return half set up
        # We report the program's exit; a failed setup says why on stderr.
        why = f"{e.what}: {os.strerror(e.err)}" if isinstance(e, _SetupError) else repr(e)
        os.write(2, f"polyrun zygote: {why}\n".encode())
        os._exit(127)


def _fork_program(run, stdio, status, cgroup_files, ns, fprog, own_pid_ns):
    """Forks H into G's PID namespace. True in H (returning as the program), False here."""
    pid = -1
    if _libc.setns(ns[-1], CLONE_NEWPID) < 0:
        _report(status, KIND_SETUP_FAILED, 0, ctypes.get_errno(), "setns CLONE_NEWPID")
    else:
        try:
            pid = os.fork()
        except OSError as e:
            _report(status, KIND_SETUP_FAILED, 0, e.errno or 0, "fork")
        if pid == 0:
            _become_program(run, stdio, cgroup_files, ns, fprog)
            return True
        if _libc.setns(own_pid_ns, CLONE_NEWPID) < 0:
            os.write(2, b"polyrun zygote: setns back to our PID namespace failed\n")
            os._exit(70)  # the next run would be forked into this one's
    if pid > 0:
        _running[pid] = status  # reaped, and reported, by the loop in _serve
    else:
        os.close(status)
    _close_all(*stdio, *cgroup_files, *ns)
    return False


def _close_all(*fds):
    for fd in fds:
        os.close(fd)


def _handle(msg, fds, factory, ahead, fprog, own_pid_ns):
    """One message from the host. True only in H, the run's program."""
    try:
        run = json.loads(msg)
        if not isinstance(run, dict):
            raise ValueError("a run is a JSON object")
        if "go" not in run and "drop" not in run and (
                len(fds) < 4 or (run.get("ahead") and len(fds) != 4)):
            raise ValueError(f"a run needs 4 descriptors or more, got {len(fds)}")
    except ValueError as e:
        if len(fds) >= 4:
            _report(fds[3], KIND_SETUP_FAILED, 0, 0, f"zygote: bad run message: {e}")
        _close_all(*fds)
        return False
    if "drop" in run:
        made = ahead.pop(run["drop"], None)
        if made is not None:
            stdio, status, ns = made
            _close_all(*stdio, status, *ns)
        return False
    if "go" in run:
        made = ahead.pop(run["go"], None)
        if made is None:
            _close_all(*fds)  # dropped already: the host has seen its init die
            return False
        stdio, status, ns = made
        cgroup_files = fds
    else:
        stdio, status, cgroup_files = fds[:3], fds[3], fds[4:]
        ns = _make_namespaces(factory, run, status)
        if ns is None:
            _close_all(*fds)
            return False
        if run.get("ahead"):
            ahead[run["id"]] = (stdio, status, ns)
            return False
    return _fork_program(run, stdio, status, cgroup_files, ns, fprog, own_pid_ns)


def _serve():
    """Z. Returns only in H, the run's program."""
    ctl = socket.socket(fileno=3)
    filter_bytes = ctl.recv(1 << 16)
    if not filter_bytes or len(filter_bytes) % 8:
        sys.exit("polyrun zygote: no seccomp filter from the host")
    filter_buf = ctypes.create_string_buffer(filter_bytes, len(filter_bytes))
    fprog = _SockFprog(len(filter_bytes) // 8, ctypes.addressof(filter_buf))
    own_pid_ns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    # SIGCHLD only wakes the loop below: the interpreter's C-level handler writes a byte on
    # `wake` at once. A Python handler runs between bytecodes, and one that fell due just before
    # a blocking recv would wait for the host's next message, leaving a run's end unreported.
    wake, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    factory = _start_factory()
    ahead = {}  # id -> (stdio, status, the run's namespaces)
    poller = select.poll()
    poller.register(ctl, select.POLLIN)
    poller.register(wake, select.POLLIN)

    # Everything loaded so far lives as long as any run: out of the collector's sight, the
    # final collection at each run's exit skips it.
    gc.freeze()
    ctl.send(b"R")
    while True:
        ready = {fd for fd, _ in poller.poll()}
        if wake in ready:
            try:
                while os.read(wake, 256):
                    pass
            except BlockingIOError:
                pass
            _reap_children()
        if ctl.fileno() in ready:
            msg, fds, _, _ = socket.recv_fds(ctl, 1 << 16, 16)
            if not msg:
                os._exit(0)  # the host is done with us
            if _handle(msg, fds, factory, ahead, fprog, own_pid_ns):
                return


_ZYGOTE_MODULES = frozenset(sys.modules)
_serve()
_warm.run_and_exit(_ZYGOTE_MODULES)
