// Looks at the sandbox from the inside. argv[1] names the probe; output is line-oriented
// "key=value" text the tests parse.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

// errno of creating `path` for writing (0: it worked, which is a failure of the sandbox).
static int try_create(const char* path) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd < 0) return errno;
  close(fd);
  return 0;
}

static int try_open(const char* path, int flags) {
  int fd = open(path, flags);
  if (fd < 0) return errno;
  close(fd);
  return 0;
}

static void print_file(const char* path) {
  FILE* f = fopen(path, "r");
  if (f == NULL) {
    printf("open %s errno=%d\n", path, errno);
    return;
  }
  char line[4096];
  while (fgets(line, sizeof line, f)) fputs(line, stdout);
  fclose(f);
}

static int connect_to(int family, const char* addr, int port, int type) {
  int fd = socket(family, type | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int rc;
  if (family == AF_INET) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    inet_pton(AF_INET, addr, &sa.sin_addr);
    rc = connect(fd, (struct sockaddr*)&sa, sizeof sa);
  } else {
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons((unsigned short)port)};
    inet_pton(AF_INET6, addr, &sa.sin6_addr);
    rc = connect(fd, (struct sockaddr*)&sa, sizeof sa);
  }
  int err = rc == 0 ? 0 : errno;
  if (rc == 0 && type == SOCK_DGRAM) {
    // A connected UDP socket: the error shows up on send.
    rc = (int)send(fd, "x", 1, 0);
    err = rc < 0 ? errno : 0;
  }
  close(fd);
  return err;
}

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  const char* p = argv[1];

  if (!strcmp(p, "write")) {
    // argv[2..]: paths to create; prints "path errno".
    for (int i = 2; i < argc; ++i) printf("%s %d\n", argv[i], try_create(argv[i]));
    return 0;
  }

  if (!strcmp(p, "mkdir")) {
    for (int i = 2; i < argc; ++i) {
      int rc = mkdir(argv[i], 0755);
      printf("%s %d\n", argv[i], rc == 0 ? 0 : errno);
    }
    return 0;
  }

  if (!strcmp(p, "open_write")) {
    // Existing files opened for writing (no O_CREAT).
    for (int i = 2; i < argc; ++i) printf("%s %d\n", argv[i], try_open(argv[i], O_WRONLY));
    return 0;
  }

  if (!strcmp(p, "read")) {
    // argv[2..]: paths to open for reading; prints "path errno".
    for (int i = 2; i < argc; ++i) printf("%s %d\n", argv[i], try_open(argv[i], O_RDONLY));
    return 0;
  }

  if (!strcmp(p, "cat")) {
    for (int i = 2; i < argc; ++i) print_file(argv[i]);
    return 0;
  }

  if (!strcmp(p, "ls")) {
    // argv[2..]: directories; prints "dir: a b c" with entries sorted.
    for (int i = 2; i < argc; ++i) {
      struct dirent** names = NULL;
      int n = scandir(argv[i], &names, NULL, alphasort);
      printf("%s:", argv[i]);
      if (n < 0) printf(" errno=%d", errno);
      for (int j = 0; j < n; ++j) {
        if (strcmp(names[j]->d_name, ".") && strcmp(names[j]->d_name, "..")) {
          printf(" %s", names[j]->d_name);
        }
        free(names[j]);
      }
      free(names);
      printf("\n");
    }
    return 0;
  }

  if (!strcmp(p, "cmdline")) {
    // /proc/1/cmdline with NULs shown as spaces, and its length.
    int fd = open("/proc/1/cmdline", O_RDONLY);
    if (fd < 0) {
      printf("cmdline errno=%d\n", errno);
      return 0;
    }
    char buf[65536];
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    printf("len=%zd text=", n);
    for (ssize_t i = 0; i < n; ++i) putchar(buf[i] == '\0' ? ' ' : buf[i]);
    printf("\n");
    return 0;
  }

  if (!strcmp(p, "proc")) {
    printf("pid=%d ppid=%d\n", getpid(), getppid());
    DIR* d = opendir("/proc");
    if (d == NULL) return 3;
    printf("pids=");
    struct dirent* e;
    while ((e = readdir(d)) != NULL) {
      if (e->d_name[0] >= '0' && e->d_name[0] <= '9') printf("%s,", e->d_name);
    }
    printf("\n");
    closedir(d);
    // argv[2..]: host pids that must not be visible or signalable.
    for (int i = 2; i < argc; ++i) {
      char path[64];
      snprintf(path, sizeof path, "/proc/%s/status", argv[i]);
      int open_err = try_open(path, O_RDONLY);
      int kill_err = kill(atoi(argv[i]), 0) == 0 ? 0 : errno;
      printf("host %s open=%d kill=%d\n", argv[i], open_err, kill_err);
    }
    return 0;
  }

  if (!strcmp(p, "fds")) {
    DIR* d = opendir("/proc/self/fd");
    if (d == NULL) return 3;
    printf("fds=");
    struct dirent* e;
    while ((e = readdir(d)) != NULL) {
      if (e->d_name[0] == '.') continue;
      int fd = atoi(e->d_name);
      if (fd == dirfd(d)) continue;
      char path[64], target[256];
      snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
      ssize_t n = readlink(path, target, sizeof target - 1);
      target[n < 0 ? 0 : n] = '\0';
      printf("%d:%s,", fd, target);
    }
    printf("\n");
    closedir(d);
    return 0;
  }

  if (!strcmp(p, "connect")) {
    // argv[2]: 4 or 6, argv[3]: address, argv[4]: port, argv[5]: tcp or udp.
    int family = atoi(argv[2]) == 6 ? AF_INET6 : AF_INET;
    int type = strcmp(argv[5], "udp") == 0 ? SOCK_DGRAM : SOCK_STREAM;
    int err = connect_to(family, argv[3], atoi(argv[4]), type);
    printf("connect %s:%s/%s errno=%d\n", argv[3], argv[4], argv[5], err < 0 ? -err : err);
    return 0;
  }

  if (!strcmp(p, "unix_abstract")) {
    // argv[2]: an abstract socket name (without the leading NUL) to connect to.
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(argv[2]);
    if (len + 1 > sizeof sa.sun_path) return 3;
    memcpy(sa.sun_path + 1, argv[2], len);
    int rc = connect(s, (struct sockaddr*)&sa, (socklen_t)(sizeof(sa_family_t) + 1 + len));
    printf("unix_abstract errno=%d\n", rc == 0 ? 0 : errno);
    return 0;
  }

  if (!strcmp(p, "persist_write") || !strcmp(p, "persist_hold")) {
    const char* paths[] = {"/tmp/polyrun-x", "/work/polyrun-x", "/dev/shm/polyrun-x"};
    for (int i = 0; i < 3; ++i) {
      int fd = open(paths[i], O_WRONLY | O_CREAT | O_TRUNC, 0644);
      int ok = fd >= 0 && write(fd, "secret", 6) == 6;
      if (fd >= 0) close(fd);
      printf("%s written=%d exists=%d\n", paths[i], ok, access(paths[i], F_OK) == 0);
    }
    int id = shmget(0x706f6c79, 4096, IPC_CREAT | 0666);
    printf("shm created=%d\n", id >= 0);
    // An abstract unix socket left listening.
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, "\0polyrun-x", 10);
    int bound = bind(s, (struct sockaddr*)&sa, sizeof(sa_family_t) + 10) == 0 && listen(s, 1) == 0;
    printf("abstract bound=%d\n", bound);
    if (!strcmp(p, "persist_hold")) {
      // Stay alive, holding all of it, until the run is ended from outside.
      fflush(stdout);
      for (;;) pause();
    }
    return 0;
  }

  if (!strcmp(p, "persist_check")) {
    const char* paths[] = {"/tmp/polyrun-x", "/work/polyrun-x", "/dev/shm/polyrun-x"};
    for (int i = 0; i < 3; ++i) printf("%s exists=%d\n", paths[i], access(paths[i], F_OK) == 0);
    int id = shmget(0x706f6c79, 0, 0);
    printf("shm exists=%d\n", id >= 0);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, "\0polyrun-x", 10);
    int connected = connect(s, (struct sockaddr*)&sa, sizeof(sa_family_t) + 10) == 0;
    printf("abstract exists=%d\n", connected);
    return 0;
  }

  if (!strcmp(p, "init_kill")) {
    // PID 1 of a PID namespace ignores SIGKILL/SIGSTOP from inside; the run goes on.
    int k = kill(1, SIGKILL) == 0 ? 0 : errno;
    int s = kill(1, SIGSTOP) == 0 ? 0 : errno;
    printf("kill=%d stop=%d alive=%d\n", k, s, kill(1, 0) == 0);
    return 0;
  }

  fprintf(stderr, "unknown probe %s\n", p);
  return 2;
}
