#include "sandbox/loopback.h"

#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace polyrun::sandbox {

int BringUpLoopback(const char** syscall) {
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *syscall = "socket for loopback";
    return errno;
  }
  ifreq req{};
  std::memcpy(req.ifr_name, "lo", 3);
  int err = 0;
  if (::ioctl(fd, SIOCGIFFLAGS, &req) != 0) {
    *syscall = "ioctl SIOCGIFFLAGS lo";
    err = errno;
  } else {
    req.ifr_flags = static_cast<short>(req.ifr_flags | IFF_UP);
    if (::ioctl(fd, SIOCSIFFLAGS, &req) != 0) {
      *syscall = "ioctl SIOCSIFFLAGS lo";
      err = errno;
    }
  }
  ::close(fd);
  return err;
}

}  // namespace polyrun::sandbox
