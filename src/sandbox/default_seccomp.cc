#include "sandbox/default_seccomp.h"

namespace polyrun::sandbox {

namespace {
const sock_filter kDefault[] = {
#include "default_seccomp.inc"
};
}  // namespace

std::span<const sock_filter> DefaultSeccompFilter() {
  return kDefault;
}

}  // namespace polyrun::sandbox
