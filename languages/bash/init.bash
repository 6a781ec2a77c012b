# Sourced once by driver.py into the session's interactive bash. $1: the driver's private
# directory; $2: a descriptor holding the real stderr (bash starts with stderr on /dev/null,
# which hides the job-control warnings of an interactive shell without a terminal).
#
# Everything here is named __pr_* (plus the `read` wrapper and PROMPT_COMMAND) and must work
# under whatever options the user sets: `set -u` (every expansion has a default), `set -e` (no
# function ends in a failing test), noclobber (`>|`), a changed IFS (`IFS=` before reads).

exec 2>&"$2"
eval "exec $2>&-"
set +H +o history
unset HISTFILE
export -n PS1 PS2
readonly __pr_dir=$1
__pr_tok=ready __pr_cellrun='' __pr_last=0 __pr_flags='' __pr_rfd='' __pr_code=''

__pr_ret() { return "$1"; }

# PROMPT_COMMAND: the shell is back at its prompt, because a line the driver sent ran to its end
# or was abandoned by SIGINT. Reports "done TOKEN STATUS" for it.
__pr_done() {
  local s=$?
  if [[ -n ${__pr_rfd-} ]]; then
    exec {__pr_rfd}<&-
    __pr_rfd=
  fi
  if [[ -n ${__pr_cellrun-} ]]; then
    __pr_last=$s __pr_cellrun=
    # xtrace/verbose would echo the driver's own lines: off between cells, back on in the next.
    __pr_flags=${-//[^xv]/}
    if [[ -n $__pr_flags ]]; then set +xv; fi
  fi
  printf 'done %s %s\n' "${__pr_tok:--}" "$s" >|"$__pr_dir/status"
  __pr_tok=
  return 0
}
# The group's redirection silences the xtrace line of the call itself.
PROMPT_COMMAND='{ __pr_done; } 2>/dev/null'
readonly PROMPT_COMMAND

# Prepares the cell in $__pr_dir/code.TOKEN: the driver then runs `eval -- "$__pr_code"` at the top level, where the
# user's declarations are global. Returns the previous cell's status, so the cell sees it in $?.
__pr_cell() {
  __pr_tok=$1 __pr_cellrun=1
  IFS= builtin read -r -d '' __pr_code <"$__pr_dir/code.$1" || :
  # Parse the whole cell first, as the body of a throwaway function, so that a syntax error
  # runs none of it. (A stray `}` closes the body early and what follows it runs now, then
  # fails to parse: bash's own behaviour for a script with a syntax error.)
  if eval "__pr_parse() { :; $__pr_code
}" 2>|"$__pr_dir/err"; then
    unset -f __pr_parse
    if [[ -n $__pr_flags ]]; then __pr_code="set -$__pr_flags; $__pr_code"; fi
  else
    printf 'syntax\n' >|"$__pr_dir/status"
    __pr_code='__pr_ret 2'
  fi
  return "$__pr_last"
}

# Completion candidates for the word in $__pr_dir/word.TOKEN; $2 says which kind.
__pr_complete() {
  __pr_tok=$1
  local w=
  IFS= builtin read -r -d '' w <"$__pr_dir/word.$1" || :
  case $2 in
    var) compgen -v -- "$w" ;;
    cmd) compgen -c -- "$w" ;;
    *) compgen -d -S / -- "$w"; compgen -f -- "$w" ;;
  esac >|"$__pr_dir/matches" 2>/dev/null
  return 0
}

# `read` from the cell's own stdin (an empty file, so other programs see end of file) asks the
# client for a line: an input_request through the driver, whose answer comes back on the
# reply FIFO as "ok\nLINE\n" or "eof\n". Any other `read` is the builtin's.
# shellcheck disable=SC2162  # the user's options, -r or not, pass through
read() {
  local OPTIND=1 OPTARG __pr_o __pr_p='' __pr_s=0 __pr_h='' __pr_l=''
  while getopts ':ersa:d:i:n:N:p:t:u:' __pr_o; do
    case $__pr_o in
      p) __pr_p=$OPTARG ;;
      s) __pr_s=1 ;;
      u) if [[ $OPTARG != 0 ]]; then builtin read "$@"; return; fi ;;
      *) ;;  # the builtin's to interpret
    esac
  done
  if [[ ! /dev/fd/0 -ef $__pr_dir/in ]]; then builtin read "$@"; return; fi
  printf '%s' "$__pr_p" >|"$__pr_dir/prompt"
  # Opened read-write before the request goes out, so the driver's open never blocks.
  exec {__pr_rfd}<>"$__pr_dir/reply"
  printf 'input %s\n' "$__pr_s" >|"$__pr_dir/status"
  IFS= builtin read -r __pr_h <&"$__pr_rfd" || :
  if [[ $__pr_h == ok ]]; then IFS= builtin read -r __pr_l <&"$__pr_rfd" || :; fi
  exec {__pr_rfd}<&-
  __pr_rfd=
  if [[ $__pr_h == ok ]]; then
    builtin read "$@" <<<"$__pr_l"
  else
    builtin read "$@" </dev/null
  fi
}
