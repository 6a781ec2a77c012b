// DESIGN §6 (no network; nothing shared between runs) for the network namespaces the host makes
// for runs, ahead of need or not: each is fresh, the host's user namespace's, holds only a
// loopback that is up, is handed to one run only, and nothing inside a sandbox can reconfigure
// it.
#include <fcntl.h>
#include <linux/nsfs.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <set>

#include "escape.h"
#include "sandbox/netns_pool.h"
#include "util/unique_fd.h"

namespace polyrun::escape {
namespace {

using engine::Status;

ino_t Inode(int fd) {
  struct stat st {};
  EXPECT_EQ(::fstat(fd, &st), 0);
  return st.st_ino;
}

std::string ThreadNetns() {
  return std::filesystem::read_symlink("/proc/thread-self/ns/net");
}

class NetnsTest : public EscapeTest {};

size_t Threads() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& t : std::filesystem::directory_iterator("/proc/self/task")) ++n;
  return n;
}

// The inode of the user namespace that owns the namespace `ns` (NS_GET_USERNS).
ino_t OwnerUserns(int ns) {
  UniqueFd owner(::ioctl(ns, NS_GET_USERNS));
  EXPECT_TRUE(owner.valid()) << "NS_GET_USERNS: " << std::strerror(errno);
  return owner.valid() ? Inode(owner.get()) : 0;
}

// Kept ahead (2), and none kept ahead (0, a one-shot run's process): each is fresh, the host's
// user namespace's (nothing inside a sandbox holds a capability over it), holds a loopback that
// is up, and is handed out once; with 0, no thread makes any beyond the one asked for.
TEST_F(NetnsTest, PoolNamespacesAreFreshLoopbackOnlyAndHandedOutOnce) {
  UniqueFd host_userns(::open("/proc/self/ns/user", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(host_userns.valid());
  for (size_t ready : {size_t{2}, size_t{0}}) {
    SCOPED_TRACE("ready " + std::to_string(ready));
    const std::string host = ThreadNetns();
    const size_t threads = Threads();
    auto pool = sandbox::NetnsPool::Create(ready);
    ASSERT_TRUE(pool) << pool.error().message();
    EXPECT_EQ(ThreadNetns(), host) << "making namespaces must leave the caller where it was";
    if (ready == 0) {
      EXPECT_EQ(Threads(), threads) << "a pool keeping none ahead started a thread";
    }

    UniqueFd host_fd(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(host_fd.valid());
    std::set<ino_t> seen = {Inode(host_fd.get())};
    std::vector<UniqueFd> taken;
    // More than the pool keeps ready: the later ones are made on the spot or by the refill.
    for (int i = 0; i < 5; ++i) {
      auto ns = (*pool)->Take();
      ASSERT_TRUE(ns) << ns.error().message();
      EXPECT_TRUE(seen.insert(Inode(ns->get())).second) << "namespace " << i << " handed out twice";
      EXPECT_EQ(OwnerUserns(ns->get()), Inode(host_userns.get()))
          << "namespace " << i << " is not the host's user namespace's";
      EXPECT_EQ(ThreadNetns(), host);
      taken.push_back(std::move(*ns));
    }

    for (const UniqueFd& ns : taken) {
      auto entered = (*pool)->Enter(ns.get());
      ASSERT_TRUE(entered) << entered.error().message();
      EXPECT_NE(ThreadNetns(), host);
      struct if_nameindex* names = ::if_nameindex();
      ASSERT_NE(names, nullptr);
      std::vector<std::string> interfaces;
      for (struct if_nameindex* n = names; n->if_index != 0; ++n) {
        interfaces.emplace_back(n->if_name);
      }
      ::if_freenameindex(names);
      EXPECT_EQ(interfaces, std::vector<std::string>{"lo"});
      UniqueFd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
      ifreq req{};
      std::memcpy(req.ifr_name, "lo", 3);
      ASSERT_EQ(::ioctl(sock.get(), SIOCGIFFLAGS, &req), 0);
      EXPECT_TRUE(req.ifr_flags & IFF_UP) << "loopback left down";
      entered->reset();
      EXPECT_EQ(ThreadNetns(), host) << "leaving must return the thread to the host's namespace";
    }
  }
}

TEST_F(NetnsTest, AProgramUsesItsLoopbackButCannotReconfigureItsNetwork) {
  const std::string host = ThreadNetns();
  auto r = Run("python", R"(
import fcntl, os, socket, struct
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
c = socket.create_connection(s.getsockname())
print("loopback ok")
print("interfaces", [l.split(":")[0].strip() for l in open("/proc/net/dev").readlines()[2:]])
down = struct.pack("16sH14x", b"lo", 0)
try:
    fcntl.ioctl(socket.socket(socket.AF_INET, socket.SOCK_DGRAM), 0x8914, down)  # SIOCSIFFLAGS
    print("lo down: done")
except OSError as e:
    print("lo down: errno", e.errno)
print(os.readlink("/proc/self/ns/net"))
)");
  ASSERT_EQ(r.status, Status::kOk) << Describe(r);
  EXPECT_EQ(r.stdout_text.substr(0, r.stdout_text.rfind("net:")),
            "loopback ok\ninterfaces ['lo']\nlo down: errno 1\n")
      << Describe(r);
  EXPECT_NE(r.stdout_text.find("net:["), std::string::npos) << Describe(r);
  EXPECT_EQ(r.stdout_text.find(host), std::string::npos) << "the host's namespace: " << host;
}

}  // namespace
}  // namespace polyrun::escape
