"""polyrun's fork server for Python (docs/performance.md, "Zygotes").

Runs as the program of a sandbox built for it (Sandbox::StartZygote): uid 1000 of the
sandbox's user namespace, keeping CAP_SYS_ADMIN, CAP_NET_ADMIN and CAP_SETPCAP there (and no
other capability, nowhere else), under a seccomp profile that adds unshare, setns, mount and
capset to the default one. It never runs user code and never holds a run's data: only
descriptors and limits pass through it, so no run can leave anything here for the next.

Protocol on fd 3 (SOCK_SEQPACKET): the host sends the runs' seccomp filter (raw sock_filter
array); we answer b"R" once ready. Then each message is one run: a JSON object
{"work": bytes, "tmp": bytes, "rlimits": [[resource, soft, hard], ...]} with the descriptors
[stdin, stdout, stderr, status, cgroup files...]. For each we fork:

  C  joins the run's cgroup (writes "0" to each cgroup file, opened by the host), enters a
     network namespace made ahead by the maker process (below), makes a user namespace of its
     own (1000 mapped to the server's 1000) and in it mount, PID, IPC, UTS and cgroup
     namespaces, mounts fresh /work, /tmp and /dev/shm, forks G and exits.
  G  is PID 1 of the new PID namespace: mounts its /proc, sends its pidfd on the status socket
     (the host supervises it like a sandbox's init: SIGKILL to it ends the whole run), forks H,
     forwards signals, reaps, and reports H's wait status as an InitReport.
  H  sets the run's rlimits, drops every capability for good (bounding set, ambient, securebits
     locked), sets no_new_privs, loads the run's seccomp filter, closes every other descriptor
     and returns to the bottom of this file, which runs the program like warm.py does.

A run forked ahead of need is asked for with {"ahead": true, "work": bytes, "tmp": bytes} and
the descriptors [stdin, stdout, stderr, status] alone. C does all of the above but join a
cgroup and make the cgroup namespace; G sends its pidfd, then waits on the status socket for
the run: {"rlimits": [...]} with the cgroup files. It joins the run's cgroup, makes the cgroup
namespace (rooted there, as above) and goes on as G. Until then nothing of any run is in it;
if the host closes the socket instead, it exits.

Forked runs share what the zygote had before any run: its modules, its address-space layout
and its string-hash secret (docs/performance.md says what that means).
"""

import ctypes
import fcntl
import gc
import importlib.util
import json
import os
import resource
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
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 0x4000, 1 << 18
PR_SET_DUMPABLE, PR_SET_SECCOMP, PR_CAPBSET_DROP, PR_SET_SECUREBITS = 4, 22, 24, 28
PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 38, 47, 4
SECCOMP_MODE_FILTER = 2
# NOROOT, NO_SETUID_FIXUP, KEEP_CAPS_LOCKED and NO_CAP_AMBIENT_RAISE, each with its lock.
SECUREBITS_LOCKED = 0x01 | 0x02 | 0x04 | 0x08 | 0x20 | 0x40 | 0x80
SYS_CAPSET, SYS_PIDFD_OPEN, SYS_CLOSE_RANGE = 126, 434, 436
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
INIT_MAGIC, KIND_EXITED, KIND_SETUP_FAILED = 0x706F6C79, 1, 2
FORWARDED = {
    signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2
}

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


def _netns_maker(sock):
    """Forever: for each byte asked, a new network namespace with its loopback up, sent as fd.

    Made here, ahead of need: creating one costs 0.3-1 ms with a long tail, too much for a run.
    Each is sent once and kept by nobody but the run that gets it."""
    while sock.recv(1):
        _check(_libc.unshare(CLONE_NEWNET), "unshare CLONE_NEWNET")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            ifr = bytearray(struct.pack("16sh22x", b"lo", 0))
            fcntl.ioctl(s, SIOCGIFFLAGS, ifr)
            struct.pack_into("h", ifr, 16, struct.unpack_from("h", ifr, 16)[0] | IFF_UP)
            fcntl.ioctl(s, SIOCSIFFLAGS, ifr)
        fd = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        socket.send_fds(sock, [b"n"], [fd])
        os.close(fd)
    os._exit(0)


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
    """H: becomes the run's program (returns) or exits reporting why it could not."""
    os.setpgid(0, 0)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the server's reaper: the program's are its own
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    for res, soft, hard in run["rlimits"]:
        resource.setrlimit(res, (soft, hard))
    if _libc.syscall(SYS_CLOSE_RANGE, 3, 0xFFFFFFFF, 0) < 0:
        os.closerange(3, 1 << 20)
    os.chdir("/work")
    _drop_privileges(fprog)


def _init(run, status, fprog):
    """G, PID 1 of the run's PID namespace. Returns only in H."""
    _check(_libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None),
           "mount /proc")
    # Not dumpable: the program (same uid) cannot read our memory or environment through /proc.
    _check(_libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl PR_SET_DUMPABLE")
    pidfd = _check(_libc.syscall(SYS_PIDFD_OPEN, os.getpid(), 0), "pidfd_open")
    with socket.socket(fileno=os.dup(status)) as sock:
        socket.send_fds(sock, [b"P"], [pidfd])
        os.close(pidfd)
        if run.get("ahead"):
            msg, cgroup_files, _, _ = socket.recv_fds(sock, 1 << 16, 16)
            if not msg:
                os._exit(0)  # the host let this one go unused
            run.update(json.loads(msg))
            _join_cgroup(cgroup_files)
            _check(_libc.unshare(CLONE_NEWCGROUP), "unshare CLONE_NEWCGROUP")
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED | {signal.SIGCHLD})
    program = os.fork()
    if program == 0:
        os.close(status)
        try:
            _program(run, fprog)
        except BaseException as e:  # noqa: BLE001: never return half set up
            # The init reports the program's exit; a failed setup says why on stderr.
            why = f"{e.what}: {os.strerror(e.err)}" if isinstance(e, _SetupError) else repr(e)
            os.write(2, f"polyrun zygote: {why}\n".encode())
            os._exit(127)
        return
    for fd in (0, 1, 2):
        os.close(fd)  # the program holds them: ours would only delay the host's EOF
    wait_status = 0
    while True:
        info = signal.sigwaitinfo(FORWARDED | {signal.SIGCHLD})
        if info.si_signo != signal.SIGCHLD:
            try:
                os.killpg(program, info.si_signo)
            except OSError:
                pass
            continue
        done = False
        while True:
            try:
                pid, st = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid == program:
                wait_status, done = st, True
        if done:
            break
    _report(status, KIND_EXITED, wait_status)
    os.close(status)  # the host's end of the run: it answers while the kernel tears us down
    os._exit(0)  # as PID 1: the kernel kills whatever the program left behind


def _join_cgroup(cgroup_files):
    """Moves this process into the run's cgroup: "0" to each control file the host opened."""
    for fd in cgroup_files:
        os.write(fd, b"0")
        os.close(fd)


def _child(run, fds, netns, fprog):
    """C. Returns only in H."""
    stdin, stdout, stderr, status, *cgroup_files = fds
    ahead = bool(run.get("ahead"))
    try:
        _join_cgroup(cgroup_files)  # none when forked ahead: G joins once the run is known
        for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
            os.dup2(fd, target)
            os.close(fd)
        # Owned by the server's user namespace: entered while still in it.
        _check(_libc.setns(netns, CLONE_NEWNET), "setns CLONE_NEWNET")
        os.close(netns)
        # A user namespace of the run's own, its uid and gid 1000 mapped to the server's 1000;
        # every namespace below belongs to it. The cgroup namespace is made after joining the
        # run's cgroup (by G, when forked ahead), so that it is the run's root, as in a cold run.
        _check(_libc.unshare(CLONE_NEWUSER), "unshare CLONE_NEWUSER")
        for name, text in (("uid_map", "1000 1000 1"), ("setgroups", "deny"),
                           ("gid_map", "1000 1000 1")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
        _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS |
                             (0 if ahead else CLONE_NEWCGROUP)), "unshare")
        _check(_libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate")
        for target, size, opts, flags in (
            (b"/work", run["work"], "nr_inodes=16384,mode=755", MS_NOSUID | MS_NODEV),
            (b"/tmp", run["tmp"], "nr_inodes=16384,mode=1777", MS_NOSUID | MS_NODEV),
            (b"/dev/shm", run["tmp"], "nr_inodes=1024,mode=1777", MS_NOSUID | MS_NODEV | MS_NOEXEC),
        ):
            data = f"size={int(size)},{opts}".encode()
            _check(_libc.mount(b"tmpfs", target, b"tmpfs", flags, data), "mount tmpfs " + target.decode())
        if os.fork() == 0:
            _init(run, status, fprog)
            return
    except _SetupError as e:
        _report(status, KIND_SETUP_FAILED, 0, e.err, e.what)
    except BaseException as e:  # noqa: BLE001: whatever it was, the host must hear of it
        _report(status, KIND_SETUP_FAILED, 0, getattr(e, "errno", 0) or 0, f"zygote: {e!r}")
    os._exit(0)


def _reap_children(signum, frame):
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


def _serve():
    """Z. Returns only in H, the run's program."""
    ctl = socket.socket(fileno=3)
    filter_bytes = ctl.recv(1 << 16)
    if not filter_bytes or len(filter_bytes) % 8:
        sys.exit("polyrun zygote: no seccomp filter from the host")
    filter_buf = ctypes.create_string_buffer(filter_bytes, len(filter_bytes))
    fprog = _SockFprog(len(filter_bytes) // 8, ctypes.addressof(filter_buf))

    maker, maker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    if os.fork() == 0:
        ctl.close()
        maker.close()
        _netns_maker(maker_end)
    maker_end.close()
    for _ in range(4):  # namespaces kept ready; one message each (SOCK_SEQPACKET)
        maker.send(b"n")

    # Everything loaded so far lives as long as any run: out of the collector's sight, the
    # final collection at each run's exit skips it.
    gc.freeze()
    ctl.send(b"R")
    # Each C is reaped as it ends (right after forking its G), not waited for: the next run's C
    # starts while this one's still works. Reaped at once, because until then it would count in
    # its run's process limit.
    signal.signal(signal.SIGCHLD, _reap_children)
    while True:
        msg, fds, _, _ = socket.recv_fds(ctl, 1 << 16, 16)
        if not msg:
            os._exit(0)  # the host is done with us
        try:
            run = json.loads(msg)
            if not isinstance(run, dict):
                raise ValueError("a run is a JSON object")
            if len(fds) < 4 or (run.get("ahead") and len(fds) != 4):
                raise ValueError(f"a run needs 4 descriptors or more, got {len(fds)}")
        except ValueError as e:
            if len(fds) >= 4:
                _report(fds[3], KIND_SETUP_FAILED, 0, 0, f"zygote: bad run message: {e}")
            for fd in fds:
                os.close(fd)
            continue
        got, netns, _, _ = socket.recv_fds(maker, 1, 1)
        if not got or not netns:
            sys.exit("polyrun zygote: the network namespace maker ended")
        maker.send(b"n")
        pid = os.fork()
        if pid == 0:
            os.close(ctl.detach())
            os.close(maker.detach())
            _child(run, fds, netns[0], fprog)
            return
        os.close(netns[0])
        for fd in fds:
            os.close(fd)

_ZYGOTE_MODULES = frozenset(sys.modules)
_serve()
_warm.run_and_exit(_ZYGOTE_MODULES)
