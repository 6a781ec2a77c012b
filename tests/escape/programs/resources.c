// Resource attacks: bombs, loops, stops, daemons and floods. argv[1] names the attack.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void* sleeper(void* arg) {
  (void)arg;
  for (;;) pause();
  return NULL;
}

static void write_all(int fd, const char* buf, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, buf, len);
    if (n <= 0) return;
    buf += n;
    len -= (size_t)n;
  }
}

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  const char* p = argv[1];

  if (!strcmp(p, "fork_bomb")) {
    // The classic: every process forks forever and spins.
    for (;;) fork();
  }

  if (!strcmp(p, "fork_count")) {
    // Fork children that linger until fork fails; report how far we got and why it stopped.
    int count = 0;
    for (;;) {
      pid_t pid = fork();
      if (pid == 0) {
        for (;;) pause();
      }
      if (pid < 0) {
        printf("forks=%d errno=%d\n", count, errno);
        return 0;
      }
      if (++count > 100000) break;
    }
    printf("forks=%d errno=0\n", count);
    return 0;
  }

  if (!strcmp(p, "thread_bomb")) {
    int count = 0;
    for (;;) {
      pthread_t t;
      int rc = pthread_create(&t, NULL, sleeper, NULL);
      if (rc != 0) {
        printf("threads=%d errno=%d\n", count, rc);
        fflush(stdout);
        _exit(0);
      }
      if (++count > 100000) break;
    }
    printf("threads=%d errno=0\n", count);
    fflush(stdout);
    _exit(0);
  }

  if (!strcmp(p, "mem_bomb")) {
    // N processes each touch M MiB; none alone exceeds the limit, together they do.
    int procs = atoi(argv[2]);
    size_t mib = (size_t)atol(argv[3]);
    for (int i = 0; i < procs; ++i) {
      if (fork() == 0) {
        char* mem = malloc(mib << 20);
        if (mem == NULL) _exit(3);
        for (size_t off = 0; off < (mib << 20); off += 4096) mem[off] = 1;
        for (;;) pause();
      }
    }
    for (;;) {
      if (wait(NULL) < 0 && errno == ECHILD) break;
    }
    printf("all children ended\n");
    return 0;
  }

  if (!strcmp(p, "cpu_loop")) {
    volatile unsigned long x = 0;
    for (;;) ++x;
  }

  if (!strcmp(p, "cpu_tree")) {
    int procs = atoi(argv[2]);
    for (int i = 1; i < procs; ++i) {
      if (fork() == 0) break;
    }
    volatile unsigned long x = 0;
    for (;;) ++x;
  }

  if (!strcmp(p, "sleep")) {
    sleep(1000);
    return 0;
  }

  if (!strcmp(p, "sigstop")) {
    // A child that stops itself too, so the whole tree is stopped.
    pid_t child = fork();
    if (child == 0) {
      raise(SIGSTOP);
      sleep(1000);
      _exit(0);
    }
    int st = 0;
    if (waitpid(child, &st, WUNTRACED) == child && WIFSTOPPED(st)) printf("child stopped\n");
    printf("stopping\n");
    fflush(stdout);
    raise(SIGSTOP);
    printf("continued\n");
    return 0;
  }

  if (!strcmp(p, "daemon")) {
    // Double fork + setsid, ignore every catchable signal, drop stdio, keep working.
    pid_t pid = fork();
    if (pid == 0) {
      setsid();
      if (fork() != 0) _exit(0);
      for (int s = 1; s < NSIG; ++s) signal(s, SIG_IGN);
      int null = open("/dev/null", O_RDWR);
      dup2(null, 0);
      dup2(null, 1);
      dup2(null, 2);
      if (chdir("/") != 0) _exit(1);
      for (;;) {
        int fd = open("/tmp/daemon-alive", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) close(fd);
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
      }
    }
    waitpid(pid, NULL, 0);
    // Exit only once the daemon is demonstrably at work.
    for (int i = 0; i < 1000 && access("/tmp/daemon-alive", F_OK) != 0; ++i) {
      struct timespec ts = {0, 5 * 1000 * 1000};
      nanosleep(&ts, NULL);
    }
    printf("daemon %s, parent exits\n", access("/tmp/daemon-alive", F_OK) == 0 ? "alive" : "missing");
    return 0;
  }

  if (!strcmp(p, "grandchild_stdout")) {
    // A grandchild keeps stdout and stderr open and lives on after the main program exits.
    int ready[2];
    if (pipe(ready) != 0) return 3;
    if (fork() == 0) {
      if (fork() == 0) {
        close(ready[0]);
        printf("grandchild up\n");
        fflush(stdout);
        if (write(ready[1], "x", 1) != 1) _exit(1);
        close(ready[1]);
        sleep(1000);
        _exit(0);
      }
      _exit(0);
    }
    close(ready[1]);
    char c;
    if (read(ready[0], &c, 1) != 1) return 4;
    wait(NULL);
    printf("main exits\n");
    return 0;
  }

  if (!strcmp(p, "flood")) {
    // argv[2]: stdout, stderr or both. Writes forever.
    static char buf[65536];
    memset(buf, 'A', sizeof buf);
    int out = strcmp(argv[2], "stderr") != 0;
    int err = strcmp(argv[2], "stdout") != 0;
    for (;;) {
      if (out) write_all(1, buf, sizeof buf);
      if (err) write_all(2, buf, sizeof buf);
    }
  }

  if (!strcmp(p, "fill")) {
    // Fill each writable filesystem until the write fails; report bytes and errno.
    static char buf[1 << 16];
    memset(buf, 'z', sizeof buf);
    for (int i = 2; i < argc; ++i) {
      char path[256];
      snprintf(path, sizeof path, "%s/fill", argv[i]);
      int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd < 0) {
        printf("%s open errno=%d\n", argv[i], errno);
        continue;
      }
      long long total = 0;
      int err = 0;
      for (;;) {
        ssize_t n = write(fd, buf, sizeof buf);
        if (n < 0) {
          err = errno;
          break;
        }
        total += n;
      }
      close(fd);
      printf("%s bytes=%lld errno=%d\n", argv[i], total, err);
    }
    fflush(stdout);
    return 0;
  }

  fprintf(stderr, "unknown attack %s\n", p);
  return 2;
}
