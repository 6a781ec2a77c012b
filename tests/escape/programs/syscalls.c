// Syscall-level probes. argv[1] names the probe; each prints "<name>=<ret> errno=<errno>" on
// stdout. Arguments are chosen so that, were the seccomp filter to let the call through, the
// kernel itself would answer differently (success, EFAULT, EINVAL, EBADF...) wherever such an
// argument exists; the test then asserts the exact errno the filter must produce.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/keyctl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

static void report(const char* name, long ret) {
  printf("%s=%ld errno=%d\n", name, ret, ret < 0 ? errno : 0);
  fflush(stdout);
}

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  const char* p = argv[1];
  long r;
  errno = 0;
  if (!strcmp(p, "ptrace")) {
    r = syscall(SYS_ptrace, 0 /* PTRACE_TRACEME: the kernel would allow it */, 0, 0, 0);
  } else if (!strcmp(p, "mount")) {
    r = syscall(SYS_mount, (char*)1, "/", (char*)1, 0, NULL);  // kernel: EFAULT
  } else if (!strcmp(p, "umount2")) {
    r = syscall(SYS_umount2, "/", 0x80000000);  // kernel: EINVAL (unknown flag)
  } else if (!strcmp(p, "pivot_root")) {
    r = syscall(SYS_pivot_root, "/work", "/work");
  } else if (!strcmp(p, "unshare")) {
    r = syscall(SYS_unshare, CLONE_NEWUSER);  // kernel: allowed (nested user namespace)
  } else if (!strcmp(p, "setns")) {
    r = syscall(SYS_setns, -1, 0);  // kernel: EBADF
  } else if (!strcmp(p, "keyctl")) {
    r = syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 1);
  } else if (!strcmp(p, "add_key")) {
    r = syscall(SYS_add_key, "user", "polyrun", "x", 1, KEY_SPEC_PROCESS_KEYRING);
  } else if (!strcmp(p, "bpf")) {
    r = syscall(SYS_bpf, 0 /* BPF_MAP_CREATE */, NULL, 0);
  } else if (!strcmp(p, "perf_event_open")) {
    r = syscall(SYS_perf_event_open, NULL, 0, -1, -1, ~0UL);  // kernel: EINVAL (flags)
  } else if (!strcmp(p, "io_uring_setup")) {
    r = syscall(SYS_io_uring_setup, 1, NULL);  // kernel: EFAULT
  } else if (!strcmp(p, "userfaultfd")) {
    r = syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);  // kernel: allowed
  } else if (!strcmp(p, "kexec_load")) {
    r = syscall(SYS_kexec_load, 0, 0, NULL, 0);
  } else if (!strcmp(p, "init_module")) {
    r = syscall(SYS_init_module, NULL, 0, "");
  } else if (!strcmp(p, "reboot")) {
    r = syscall(SYS_reboot, 0, 0, 0, NULL);  // bad magic: EINVAL even if it got that far
  } else if (!strcmp(p, "swapon")) {
    r = syscall(SYS_swapon, "/work/swap", 0);
  } else if (!strcmp(p, "clone3")) {
    r = syscall(SYS_clone3, NULL, 0);  // kernel: EINVAL
  } else if (!strcmp(p, "clone_newuser")) {
    // The kernel would allow this (a nested user namespace); only the filter stops it.
    r = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (r == 0) _exit(0);
    if (r > 0) waitpid((pid_t)r, NULL, 0);
  } else if (!strcmp(p, "clone_plain")) {
    // Control: an ordinary fork through the same syscall must work.
    r = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    if (r == 0) _exit(0);
    if (r > 0) {
      int st = 0;
      waitpid((pid_t)r, &st, 0);
      r = WIFEXITED(st) ? 0 : -1;
    }
  } else if (!strcmp(p, "tiocsti")) {
    char c = 'x';
    r = syscall(SYS_ioctl, 0, TIOCSTI, &c);  // kernel on a pipe: ENOTTY
  } else if (!strcmp(p, "tiocsti_high")) {
    // The kernel truncates the request to 32 bits: this is TIOCSTI to it.
    char c = 'x';
    r = syscall(SYS_ioctl, 0, (unsigned long)TIOCSTI | (1UL << 32), &c);
  } else if (!strcmp(p, "tioclinux_high")) {
    char c = 2;
    r = syscall(SYS_ioctl, 0, (unsigned long)TIOCLINUX | (1UL << 32), &c);
  } else if (!strcmp(p, "socket_vsock")) {
    // vsock is not confined by the network namespace: it reaches the VM's host services.
    r = syscall(SYS_socket, 40 /* AF_VSOCK */, SOCK_STREAM, 0);  // kernel: allowed
  } else if (!strcmp(p, "socket_netlink")) {
    r = syscall(SYS_socket, 16 /* AF_NETLINK */, SOCK_RAW, 0 /* NETLINK_ROUTE */);  // allowed
  } else if (!strcmp(p, "socket_packet")) {
    r = syscall(SYS_socket, 17 /* AF_PACKET */, SOCK_RAW, 0);
  } else if (!strcmp(p, "ioctl_control")) {
    int n = 0;
    r = syscall(SYS_ioctl, 0, FIONREAD, &n);  // an allowed ioctl on the stdin pipe
  } else if (!strcmp(p, "i386")) {
    printf("before\n");
    fflush(stdout);
    // getpid through the 32-bit entry point.
    long ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(20) : "memory");
    r = ret;
  } else if (!strcmp(p, "x32")) {
    printf("before\n");
    fflush(stdout);
    r = syscall(0x40000000L | SYS_getpid);  // kernel without x32: ENOSYS
  } else {
    fprintf(stderr, "unknown probe %s\n", p);
    return 2;
  }
  report(p, r);
  return 0;
}
