#!/usr/bin/env bash
# cgroup2-vm.sh - run one command inside a throwaway QEMU VM whose only cgroup
# hierarchy is cgroup v2 (all controllers available).
#
#   tests/vm/cgroup2-vm.sh [options] -- /abs/path/to/program arg...
#
# The host root filesystem is shared read-only over 9p and becomes the VM's /,
# so host paths (e.g. /work/main/build/...) work unchanged. The command runs as
# root, in the caller's cwd, with fresh proc/sys/dev, tmpfs on /tmp /run
# /var/tmp /dev/shm, and cgroup2 (only) on /sys/fs/cgroup.
#
# Exit status: the command's exit status; 124 on timeout; 125 when the VM or
# the harness failed (message on stderr). See tests/vm/README.md.
set -euo pipefail

PROG=cgroup2-vm
SELF_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SELF_DIR/../.." && pwd)
CACHE_DIR=${POLYRUN_VM_CACHE:-$REPO_ROOT/.cache-vm}

TIMEOUT=600
MEM=2048
SMP=2
VERBOSE=0
REBUILD=0
RW_DIRS=()
CGROUP=
EXTRA_ENV=()

usage() {
  cat <<'EOF'
usage: tests/vm/cgroup2-vm.sh [options] -- /abs/path/to/program [arg...]

Runs the program as root inside a TCG QEMU VM (Debian 6.1 kernel) whose only
cgroup hierarchy is cgroup2 mounted at /sys/fs/cgroup. The host / is the VM's /
(read-only 9p); the program runs in the caller's cwd. Its stdout+stderr are
streamed to this script's stdout; the script exits with its exit status.

options:
  --timeout SECONDS  kill the VM after this long (default 600); exit 124
  --mem MB           VM memory (default 2048)
  --smp N            VM CPUs (default 2)
  --rw DIR           also share host DIR read-write at the same path (repeatable)
  --cgroup PATH      start the command in /sys/fs/cgroup/PATH (created, with all
                     controllers enabled down to its parent), like a
                     systemd-delegated service, instead of the root cgroup
  -e NAME[=VALUE]    pass/set an extra environment variable (repeatable)
  --verbose          kernel/init console to stderr (boot debugging)
  --rebuild          rebuild the cached kernel/initramfs first
  -h, --help         this help

Always passed through: PATH, and every POLYRUN_* and GTEST_* variable.
Exit status: the command's; 124 on timeout; 125 on VM/harness failure.
EOF
}

die() { echo "$PROG: error: $*" >&2; exit 125; }
note() { echo "$PROG: $*" >&2; }

# ---------------------------------------------------------------- arguments
while [ $# -gt 0 ]; do
  case "$1" in
    --timeout) [ $# -ge 2 ] || die "--timeout needs a value"; TIMEOUT=$2; shift 2 ;;
    --timeout=*) TIMEOUT=${1#*=}; shift ;;
    --mem) [ $# -ge 2 ] || die "--mem needs a value"; MEM=$2; shift 2 ;;
    --mem=*) MEM=${1#*=}; shift ;;
    --smp) [ $# -ge 2 ] || die "--smp needs a value"; SMP=$2; shift 2 ;;
    --smp=*) SMP=${1#*=}; shift ;;
    --rw) [ $# -ge 2 ] || die "--rw needs a value"; RW_DIRS+=("$2"); shift 2 ;;
    --rw=*) RW_DIRS+=("${1#*=}"); shift ;;
    --cgroup) [ $# -ge 2 ] || die "--cgroup needs a value"; CGROUP=$2; shift 2 ;;
    --cgroup=*) CGROUP=${1#*=}; shift ;;
    -e) [ $# -ge 2 ] || die "-e needs a value"; EXTRA_ENV+=("$2"); shift 2 ;;
    --verbose|-v) VERBOSE=1; shift ;;
    --rebuild) REBUILD=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) usage >&2; die "unexpected argument '$1' (the command goes after --)" ;;
  esac
done
[ $# -ge 1 ] || { usage >&2; die "no command given"; }
[[ "$TIMEOUT" =~ ^[0-9]+$ ]] && [ "$TIMEOUT" -gt 0 ] || die "--timeout must be a positive integer"
[[ "$MEM" =~ ^[0-9]+$ ]] && [ "$MEM" -ge 256 ] || die "--mem must be an integer >= 256"
[[ "$SMP" =~ ^[0-9]+$ ]] && [ "$SMP" -ge 1 ] || die "--smp must be a positive integer"
CGROUP=${CGROUP#/}; CGROUP=${CGROUP%/}
case "/$CGROUP/" in */../*|*/./*|*//*) [ -z "$CGROUP" ] || die "bad --cgroup path '$CGROUP'" ;; esac
case "$1" in /*) ;; *) die "the program must be an absolute path (got '$1')" ;; esac
for d in "${RW_DIRS[@]}"; do
  case "$d" in /*) ;; *) die "--rw needs an absolute path (got '$d')" ;; esac
  [ -d "$d" ] || die "--rw directory does not exist: $d"
done

# ------------------------------------------------------------- dependencies
missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$1 (Debian package: $2)"); }
need qemu-system-x86_64 qemu-system-x86
need cpio cpio
need gzip gzip
need xz xz-utils
need flock util-linux
need apt-get apt
need dpkg-deb dpkg
need sha256sum coreutils
BUSYBOX=${POLYRUN_VM_BUSYBOX:-/bin/busybox}
if [ ! -x "$BUSYBOX" ]; then
  missing+=("$BUSYBOX (Debian package: busybox-static)")
elif LC_ALL=C ldd "$BUSYBOX" 2>/dev/null | grep -q '=>\|ld-linux'; then
  missing+=("a static $BUSYBOX; it is dynamically linked (Debian package: busybox-static)")
fi
if [ ${#missing[@]} -gt 0 ]; then
  for m in "${missing[@]}"; do echo "$PROG: missing: $m" >&2; done
  die "missing dependencies; install with: apt-get install -y qemu-system-x86 busybox-static cpio xz-utils"
fi

# ------------------------------------------------------- the VM's init code
# Runs as PID 1 from the initramfs: loads the 9p/virtio modules, mounts the
# host root read-only, builds the fresh mounts over it, then switch_root's
# into it and runs STAGE2 (also PID 1) with the initramfs' static busybox.
read -r -d '' INIT_SCRIPT <<'EOF' || true
#!/bin/busybox sh
B=/bin/busybox
$B mkdir -p /proc /sys /dev /newroot
$B mount -t proc proc /proc
$B mount -t sysfs sysfs /sys
$B mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
say() { $B echo "polyrun-vm-init: $*"; }
fail() { $B echo "POLYRUN-VM-INIT-FAILED: $*"; $B sync; $B poweroff -f; $B sleep 5; }
say "loading modules"
for m in $($B cat /modules.order); do
  $B insmod "/lib/modules/$m" || fail "insmod $m"
done
O9=trans=virtio,version=9p2000.L,msize=262144
R=/newroot
$B mount -t 9p -o "$O9,cache=loose,ro" hostroot $R || fail "mounting the host root (9p tag hostroot)"
for d in proc sys dev tmp run var/tmp; do
  [ -d "$R/$d" ] || fail "host root has no /$d directory"
done
$B mount -t tmpfs -o nosuid,nodev,mode=755 tmpfs $R/run || fail "tmpfs /run"
$B mkdir -p $R/run/polyrun-vm/xfer $R/run/lock $R/run/user
$B chmod 1777 $R/run/lock
$B mount -t 9p -o "$O9" xfer $R/run/polyrun-vm/xfer || fail "mounting the transfer dir (9p tag xfer)"
$B cp $B /stage2 $R/run/polyrun-vm/ || fail "copying busybox"
$B mount -t proc -o nosuid,nodev,noexec proc $R/proc || fail "proc"
$B mount -t sysfs -o nosuid,nodev,noexec sysfs $R/sys || fail "sysfs"
$B mount -t cgroup2 -o nosuid,nodev,noexec,nsdelegate,memory_recursiveprot cgroup2 $R/sys/fs/cgroup \
  || $B mount -t cgroup2 -o nosuid,nodev,noexec,nsdelegate cgroup2 $R/sys/fs/cgroup \
  || fail "cgroup2 on /sys/fs/cgroup"
$B mount -t devtmpfs -o nosuid devtmpfs $R/dev || fail "devtmpfs"
$B mkdir -p $R/dev/pts $R/dev/shm $R/dev/mqueue
$B mount -t devpts -o nosuid,noexec,newinstance,gid=5,mode=620,ptmxmode=0666 devpts $R/dev/pts || fail "devpts"
$B mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs $R/dev/shm || fail "tmpfs /dev/shm"
$B mount -t mqueue -o nosuid,nodev,noexec mqueue $R/dev/mqueue || true
$B ln -sf /proc/self/fd $R/dev/fd
$B ln -sf /proc/self/fd/0 $R/dev/stdin
$B ln -sf /proc/self/fd/1 $R/dev/stdout
$B ln -sf /proc/self/fd/2 $R/dev/stderr
$B mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs $R/tmp || fail "tmpfs /tmp"
$B mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs $R/var/tmp || fail "tmpfs /var/tmp"
# --rw shares last, so they may sit under /tmp etc. (mount point made if absent)
X=$R/run/polyrun-vm/xfer
if [ -f $X/rw.list ]; then
  while read -r tag path; do
    [ -d "$R$path" ] || $B mkdir -p "$R$path" 2>/dev/null
    $B mount -t 9p -o "$O9,cache=none" "$tag" "$R$path" || fail "mounting $path read-write (9p tag $tag)"
  done < $X/rw.list
fi
$B hostname polyrun-vm
$B ip link set lo up 2>/dev/null || $B ifconfig lo 127.0.0.1 up || true
# drop the initramfs' own proc/sys/dev so no stale mounts hide under the new /
$B umount -l /proc /sys /dev 2>/dev/null
say "switching root"
cd $R
exec $B switch_root $R /run/polyrun-vm/busybox sh /run/polyrun-vm/stage2
fail "switch_root"
EOF

read -r -d '' STAGE2_SCRIPT <<'EOF' || true
B=/run/polyrun-vm/busybox
X=/run/polyrun-vm/xfer
$B echo "polyrun-vm-init: running command"
# in-VM watchdog, in case the host side vanished without killing qemu
if [ -f $X/watchdog ]; then
  ( $B sleep "$($B cat $X/watchdog)"; $B echo "polyrun-vm-init: watchdog expired"; $B poweroff -f ) &
fi
$B env -i $B sh $X/cmd.sh </dev/null >$X/out 2>&1
rc=$?
$B echo "$rc" >$X/rc.tmp && $B mv $X/rc.tmp $X/rc
$B sync
$B echo "polyrun-vm-init: command exited $rc, powering off"
$B poweroff -f
$B sleep 10
EOF

WANT_MODULES="virtio_pci 9pnet_virtio 9p"

# --------------------------------------------------- kernel + initramfs cache
pick_kernel_pkg() {
  if [ -n "${POLYRUN_VM_KERNEL_PKG:-}" ]; then echo "$POLYRUN_VM_KERNEL_PKG"; return; fi
  # apt-cache takes ~0.7 s here; remember its answer until the apt lists change
  local stamp memo=$CACHE_DIR/kernel-pkg pkg
  stamp=$(stat -c %Y /var/lib/apt/lists 2>/dev/null || echo none)
  if [ -f "$memo" ] && [ "$(cut -d' ' -f1 "$memo")" = "$stamp" ]; then
    cut -d' ' -f2 "$memo"; return
  fi
  pkg=$(LC_ALL=C apt-cache depends linux-image-amd64 2>/dev/null \
    | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n1)
  [ -z "$pkg" ] || echo "$stamp $pkg" >"$memo"
  echo "$pkg"
}

# find_ko TREE NAME -> path of the module file (any compression), or nothing
find_ko() {
  local tree=$1 n=$2 alt
  alt=$(echo "$n" | tr '_' '-')
  find "$tree" \( -name "$n.ko" -o -name "$n.ko.*" -o -name "$alt.ko" -o -name "$alt.ko.*" \) -print -quit
}

# resolve_modules TREE NAME... -> module names, dependencies first
resolve_modules() {
  local tree=$1; shift
  local -A seen=()
  local order=()
  visit() {
    local n=$1 f deps d
    [ -z "${seen[$n]:-}" ] || return 0
    seen[$n]=1
    f=$(find_ko "$tree" "$n")
    if [ -z "$f" ]; then
      # not a module: fine if built in
      if [ -f "$tree/lib/modules/$KVER/modules.builtin" ] && grep -q "/$n.ko\$" "$tree/lib/modules/$KVER/modules.builtin"; then
        return 0
      fi
      note "warning: module $n not found in the kernel package; assuming it is built in"
      return 0
    fi
    case "$f" in
      *.xz) deps=$(xz -dc "$f" | LC_ALL=C grep -a -o 'depends=[^[:cntrl:]]*' | head -n1) ;;
      *.zst) deps=$(zstd -dc "$f" | LC_ALL=C grep -a -o 'depends=[^[:cntrl:]]*' | head -n1) ;;
      *.gz) deps=$(gzip -dc "$f" | LC_ALL=C grep -a -o 'depends=[^[:cntrl:]]*' | head -n1) ;;
      *) deps=$(LC_ALL=C grep -a -o 'depends=[^[:cntrl:]]*' "$f" | head -n1) ;;
    esac
    deps=${deps#depends=}
    for d in ${deps//,/ }; do visit "$d"; done
    order+=("$n")
  }
  local m
  for m in "$@"; do visit "$m"; done
  printf '%s\n' "${order[@]}"
}

extract_vmlinux() {   # bzImage -> ELF vmlinux (xz-compressed kernels only)
  local img=$1 dst=$2 off
  grep -q '^CONFIG_PVH=y' "$(dirname "$img")/config" 2>/dev/null || return 1
  off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$img" 2>/dev/null | head -n1 | cut -d: -f1)
  [ -n "$off" ] || return 1
  # (tail may die of SIGPIPE once xz has read the one stream: ignore status)
  { tail -c +"$((off + 1))" "$img" | xz -dc --single-stream >"$dst"; } 2>/dev/null || true
  [ "$(stat -c %s "$dst" 2>/dev/null || echo 0)" -gt 1000000 ] || return 1
  [ "$(head -c 4 "$dst" | od -An -c | tr -d ' ')" = '177ELF' ]
}

build_kernel() {   # -> $KDIR/{vmlinuz,config,modules/*.ko,modules.order}
  local work deb tree m f out
  work=$(mktemp -d "$CACHE_DIR/.build.XXXXXX")
  note "fetching kernel package $KPKG (first run; cached afterwards)"
  (cd "$work" && apt-get download -o APT::Sandbox::User=root "$KPKG" >"$work/apt.log" 2>&1) \
    || { cat "$work/apt.log" >&2; rm -rf "$work"; die "apt-get download $KPKG failed (try: apt-get update)"; }
  deb=$(ls "$work"/*.deb 2>/dev/null | head -n1)
  [ -n "$deb" ] || { rm -rf "$work"; die "apt-get download $KPKG produced no .deb"; }
  tree=$work/tree
  mkdir -p "$tree"
  dpkg-deb -x "$deb" "$tree" || { rm -rf "$work"; die "dpkg-deb -x $deb failed"; }
  rm -f "$deb"
  mkdir -p "$work/out/modules"
  out=$work/out
  cp "$tree/boot/vmlinuz-$KVER" "$out/vmlinuz" || { rm -rf "$work"; die "no /boot/vmlinuz-$KVER in $KPKG"; }
  cp "$tree/boot/config-$KVER" "$out/config" || true
  : >"$out/modules.order"
  for m in $(resolve_modules "$tree" $WANT_MODULES); do
    f=$(find_ko "$tree" "$m")
    [ -n "$f" ] || continue
    case "$f" in
      *.ko.xz) xz -dc "$f" >"$out/modules/$m.ko" ;;
      *.ko.zst) zstd -dc "$f" >"$out/modules/$m.ko" ;;
      *.ko.gz) gzip -dc "$f" >"$out/modules/$m.ko" ;;
      *) cp "$f" "$out/modules/$m.ko" ;;
    esac
    echo "$m.ko" >>"$out/modules.order"
  done
  rm -rf "$KDIR"
  mv "$out" "$KDIR"
  rm -rf "$work"
}

build_initramfs() {   # -> $INITRD
  local work root a
  work=$(mktemp -d "$CACHE_DIR/.build.XXXXXX")
  root=$work/root
  mkdir -p "$root"/{bin,dev,proc,sys,newroot,lib/modules}
  cp "$BUSYBOX" "$root/bin/busybox"
  for a in sh mount; do ln -s busybox "$root/bin/$a"; done
  cp "$KDIR"/modules/*.ko "$root/lib/modules/" 2>/dev/null || true
  cp "$KDIR/modules.order" "$root/modules.order"
  printf '%s\n' "$INIT_SCRIPT" >"$root/init"
  printf '%s\n' "$STAGE2_SCRIPT" >"$root/stage2"
  chmod 755 "$root/init"
  mknod -m 600 "$root/dev/console" c 5 1 2>/dev/null || true
  (cd "$root" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet -R 0:0) \
    | gzip -1 >"$work/initramfs.tmp" || { rm -rf "$work"; die "packing the initramfs failed"; }
  mv "$work/initramfs.tmp" "$INITRD"
  rm -rf "$work"
}

prepare_cache() {
  mkdir -p "$CACHE_DIR"
  exec 9>"$CACHE_DIR/.lock"
  flock 9
  KPKG=$(pick_kernel_pkg || true)
  if [ -z "$KPKG" ]; then
    # no apt lists (or apt-cache unusable): fall back to the newest cached kernel
    KDIR=$(ls -d "$CACHE_DIR"/kernel-*/ 2>/dev/null | sort -V | tail -n1)
    KDIR=${KDIR%/}
    [ -n "$KDIR" ] && [ -f "$KDIR/vmlinuz" ] \
      || die "cannot pick a kernel: 'apt-cache depends linux-image-amd64' found nothing (run: apt-get update)"
    KVER=${KDIR##*/kernel-}
  else
    KVER=${KPKG#linux-image-}
    KDIR=$CACHE_DIR/kernel-$KVER
  fi
  if [ "$REBUILD" = 1 ]; then rm -rf "$KDIR"; fi
  if [ ! -f "$KDIR/vmlinuz" ] || [ ! -f "$KDIR/modules.order" ]; then
    [ -n "$KPKG" ] || KPKG=linux-image-$KVER
    build_kernel
    # a newer Debian kernel replaces the older cached ones
    for d in "$CACHE_DIR"/kernel-*/; do
      [ "${d%/}" = "$KDIR" ] || rm -rf "$d"
    done
  fi
  # An uncompressed ELF vmlinux boots via PVH: skips SeaBIOS's real-mode
  # loader and the in-guest xz decompression (~3 s under TCG). Optional.
  if [ ! -f "$KDIR/vmlinux" ] && [ ! -f "$KDIR/no-vmlinux" ]; then
    if extract_vmlinux "$KDIR/vmlinuz" "$KDIR/vmlinux.tmp"; then
      mv "$KDIR/vmlinux.tmp" "$KDIR/vmlinux"
    else
      rm -f "$KDIR/vmlinux.tmp"; : >"$KDIR/no-vmlinux"
    fi
  fi
  local key
  key=$( { printf '%s\n' "$INIT_SCRIPT" "$STAGE2_SCRIPT"; cat "$KDIR/modules.order"; sha256sum <"$BUSYBOX"; } \
         | sha256sum | cut -c1-16)
  INITRD=$KDIR/initramfs-$key.cpio.gz
  if [ ! -f "$INITRD" ]; then
    rm -f "$KDIR"/initramfs-*.cpio.gz
    build_initramfs
  fi
  flock -u 9
  exec 9>&-
}

prepare_cache

# ------------------------------------------------------------------- run it
# remove work dirs left by runs that were SIGKILLed (their owner pid is gone)
for d in "${TMPDIR:-/tmp}"/cgroup2-vm.*/; do
  [ -f "$d/owner" ] || continue
  read -r opid ostart <"$d/owner" || continue
  if [ "$(cut -d' ' -f22 "/proc/$opid/stat" 2>/dev/null)" != "$ostart" ]; then rm -rf "$d"; fi
done
TMPD=$(mktemp -d "${TMPDIR:-/tmp}/cgroup2-vm.XXXXXX")
echo "$$ $(cut -d' ' -f22 /proc/$$/stat)" >"$TMPD/owner"
XFER=$TMPD/xfer
mkdir -p "$XFER"
QPID=
TPID=
cleanup() {
  if [ -n "$QPID" ] && kill -0 "$QPID" 2>/dev/null; then
    kill "$QPID" 2>/dev/null || true
    wait "$QPID" 2>/dev/null || true
  fi
  if [ -n "$TPID" ] && kill -0 "$TPID" 2>/dev/null; then
    kill "$TPID" 2>/dev/null || true
    wait "$TPID" 2>/dev/null || true
  fi
  rm -rf "$TMPD"
}
trap cleanup EXIT
trap 'note "interrupted"; exit 130' INT
trap 'note "terminated"; exit 143' TERM HUP

sq() { local s=$1; printf "'%s'" "${s//\'/\'\\\'\'}"; }   # shell single-quote

{
  echo "# generated by $PROG"
  echo "export PATH=$(sq "${PATH:-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin}")"
  echo "export HOME=/tmp"
  while IFS= read -r name; do
    echo "export $name=$(sq "${!name}")"
  done < <(compgen -e | grep -E '^(POLYRUN_|GTEST_)' || true)
  for e in "${EXTRA_ENV[@]}"; do
    name=${e%%=*}
    [[ "$name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "bad -e variable name: $name"
    if [[ "$e" == *=* ]]; then val=${e#*=}; else val=${!name-}; fi
    echo "export $name=$(sq "$val")"
  done
  case "$PWD/" in
    /tmp/*|/var/tmp/*|/run/*|/dev/*|/proc/*|/sys/*)
      covered=0
      for d in "${RW_DIRS[@]}"; do case "$PWD/" in "${d%/}"/*) covered=1 ;; esac; done
      [ "$covered" = 1 ] || note "warning: cwd $PWD is not shared; that path is a fresh VM-local mount in the VM (use --rw DIR to share it)" ;;
  esac
  echo "cd $(sq "$PWD") 2>/dev/null || { echo $(sq "$PROG: error: the cwd does not exist in the VM:") $(sq "$PWD") >&2; exit 125; }"
  if [ -n "$CGROUP" ]; then
    # enable every controller from the root down to the parent, then join the leaf
    echo "B=/run/polyrun-vm/busybox; cg=/sys/fs/cgroup; all=\$(\$B sed 's/[^ ][^ ]*/+&/g' \$cg/cgroup.controllers)"
    echo "set -- $(sq "$CGROUP")"
    echo 'IFS=/; set -- $1; unset IFS; n=$#'
    echo 'for c in "$@"; do echo "$all" >"$cg/cgroup.subtree_control" || exit 125; cg=$cg/$c; $B mkdir -p "$cg" || exit 125; done'
    echo 'echo $$ >"$cg/cgroup.procs" || exit 125; unset B cg all c n'
  fi
  echo "unset OLDPWD SHLVL"
  printf 'exec'
  for a in "$@"; do printf ' %s' "$(sq "$a")"; done
  printf '\n'
} >"$XFER/cmd.sh"
: >"$XFER/out"
echo "$((TIMEOUT + 30))" >"$XFER/watchdog"

VIRTFS_RW=()
i=0
for d in "${RW_DIRS[@]}"; do
  VIRTFS_RW+=(-virtfs "local,path=$d,mount_tag=rw$i,security_model=none,multidevs=remap")
  echo "rw$i $d" >>"$XFER/rw.list"
  i=$((i + 1))
done

if [ "$VERBOSE" = 1 ]; then
  LOGLEVEL="loglevel=7"
  : >"$TMPD/console.log"
  tail -n +1 -f "$TMPD/console.log" >&2 &
  VTPID=$!
else
  LOGLEVEL="quiet loglevel=0"
  VTPID=
fi
APPEND="console=ttyS0 $LOGLEVEL panic=-1 cgroup_no_v1=all rdinit=/init tsc=reliable no_timer_check i8042.noaux i8042.nokbd i8042.nomux i8042.nopnp mitigations=off"

KERNEL=$KDIR/vmlinuz
[ ! -f "$KDIR/vmlinux" ] || [ -n "${POLYRUN_VM_NO_PVH:-}" ] || KERNEL=$KDIR/vmlinux

# qemu dies with this script even if it is SIGKILLed (no trap runs then)
PDEATH=()
if command -v setpriv >/dev/null 2>&1 && setpriv --help 2>&1 | grep -q pdeathsig; then
  PDEATH=(setpriv --pdeathsig KILL --)
fi

start=$(date +%s%N)
"${PDEATH[@]}" qemu-system-x86_64 \
  -nodefaults -no-user-config -display none -no-reboot \
  -accel "${POLYRUN_VM_ACCEL:-tcg,thread=multi}" -cpu "${POLYRUN_VM_CPU:-max}" \
  -smp "$SMP" -m "$MEM" \
  -kernel "$KERNEL" -initrd "$INITRD" -append "$APPEND" \
  -serial "file:$TMPD/console.log" \
  -virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap" \
  -virtfs "local,path=$XFER,mount_tag=xfer,security_model=none" \
  "${VIRTFS_RW[@]}" \
  </dev/null >"$TMPD/qemu.log" 2>&1 &
QPID=$!

# stream the command's output while the VM runs; tail exits once qemu is gone
"${PDEATH[@]}" tail -c +1 -f -s 0.1 --pid="$QPID" "$XFER/out" &
TPID=$!

deadline=$(( start + TIMEOUT * 1000000000 ))
timed_out=0
while kill -0 "$QPID" 2>/dev/null; do
  if [ "$(date +%s%N)" -ge "$deadline" ]; then
    timed_out=1
    kill "$QPID" 2>/dev/null || true
    break
  fi
  sleep 0.1
done
qrc=0
wait "$QPID" 2>/dev/null || qrc=$?
QPID=
wait "$TPID" 2>/dev/null || true
TPID=
if [ -n "$VTPID" ]; then sleep 0.2; kill "$VTPID" 2>/dev/null || true; wait "$VTPID" 2>/dev/null || true; fi
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
[ -z "${POLYRUN_VM_TIMING:-}" ] || note "VM wall time: ${elapsed_ms} ms"

if [ "$timed_out" = 1 ]; then
  note "timed out after ${TIMEOUT}s; VM killed"
  exit 124
fi
if [ -f "$XFER/rc" ]; then
  rc=$(cat "$XFER/rc")
  [[ "$rc" =~ ^[0-9]+$ ]] || die "VM returned a malformed exit status '$rc'"
  exit "$rc"
fi
{
  echo "$PROG: error: the VM exited (qemu status $qrc) without running the command to completion"
  if [ -s "$TMPD/qemu.log" ]; then echo "--- qemu output:"; tail -n 20 "$TMPD/qemu.log"; fi
  if [ -s "$TMPD/console.log" ]; then
    echo "--- VM console (last 40 lines):"; tail -n 40 "$TMPD/console.log" | tr -d '\r'
  else
    echo "--- VM console: empty (the kernel printed nothing; rerun with --verbose)"
  fi
} >&2
exit 125
