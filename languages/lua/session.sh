# Starts the Lua session driver (the manifest's [session] command); driver.lua says why lua5.4
# runs as a REPL reading a FIFO.
#
# lua runs in a session of its own, so the host's SIGINT (sent to this process group) reaches
# only this shell, which passes it on to lua's group only while lua.c's one-shot SIGINT handler
# is armed (see on_sigint). A SIGINT that comes while lua handles the previous one or is
# re-arming is dropped: there, SIGINT is at its default and would kill lua.
fifo=/tmp/.polyrun-lua-$$
/usr/bin/mkfifo -m 600 "$fifo" || exit 70
: >"$fifo.gen"
trap '/bin/rm -f "$fifo.gen"' EXIT
# An asynchronous command's fd 0 is /dev/null: the command channel goes to lua as fd 4 through
# this shell's own fd 4. lua's fd 5 is the real stdout; its fd 1 takes lua.c's banner.
exec 4<&0
/usr/bin/setsid /usr/bin/lua5.4 -i "${0%/*}/driver.lua" "$fifo" 0<>"$fifo" 5>&1 1>/dev/null &
lua=$!
exec 0</dev/null 1>/dev/null 3>&- 4<&-

# lua's answer to a SIGINT now: "caught" by lua.c's handler, "ignored" (lua has not armed it
# yet, or C code waits for a child, which gets it) or "no": pending or blocked (being handled: the handler resets SIGINT to
# its default), or lua is in readline between two REPL lines, whose handler would re-raise it
# at the default (readline also catches SIGTERM, lua.c never does). Signal N is bit N-1 of each
# mask: SIGINT (2) is in the last hex digit, SIGTERM (15) in the fourth last.
sigint_state() {
  take=no
  while read -r key mask; do
    case $key in
    SigPnd: | ShdPnd: | SigBlk:)
      case $mask in *[2367abefABEF])
        take=no
        return
        ;;
      esac
      ;;
    SigIgn:)
      case $mask in *[2367abefABEF]) take=ignored ;; esac
      ;;
    SigCgt:)
      case $mask in
      *[4567cdefCDEF]???) take=no ;;
      *[2367abefABEF]) take=caught ;;
      esac
      ;;
    esac
  done <"/proc/$lua/status"
}

# driver.lua numbers each arming (each REPL line it runs) in $fifo.gen. One SIGINT per arming
# reaches lua's handler: a second one could arrive after the handler reset SIGINT, before the
# masks show it. dash runs a trap again inside a running one when the signal comes meanwhile:
# the inner run returns at once (busy), that SIGINT is one with the outer's.
forwarded=
busy=
on_sigint() {
  [ -z "$busy" ] || return 0
  busy=1
  gen=
  read -r gen <"$fifo.gen"
  if [ -n "$gen" ] && [ "$gen" != "$forwarded" ]; then
    sigint_state
    case $take in
    caught)
      forwarded=$gen
      kill -INT "-$lua"
      ;;
    ignored) kill -INT "-$lua" ;;
    esac
  fi
  busy=
}

trap 'on_sigint 2>/dev/null' INT
trap 'kill -TERM "-$lua" 2>/dev/null; exit 143' TERM HUP
while :; do
  wait "$lua"
  status=$?
  # wait also returns when a trapped signal arrives; lua is still there then.
  kill -0 "$lua" 2>/dev/null || exit "$status"
done
