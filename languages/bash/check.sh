# polyrun check for Bash: the check protocol (docs/languages.md) on stdout.
# Usage: bash -p check.sh FILE   (relative to the cwd, /work, which holds all the user's files)
# -p: the recipe's bash reads no BASH_ENV/ENV and imports no functions from the environment.
#
# Syntax errors come from bash's own parser: `bash -n` parses without running anything and stops
# at the first error. Bash exposes no parse tree, so the imports (files named by `source` or `.`)
# come from the token-level scan below. It follows quotes, escapes, $( ), ` `, ${ }, $(( )),
# comments, heredocs and line continuations, so that only a `source`/`.` in command position counts.
# A path built from variables is left out (it cannot be resolved without running the script),
# except the usual "$(dirname "$0")/x" and "${BASH_SOURCE%/*}/x" spellings of the script's folder.

set -u
shopt -s extglob
export LC_ALL=C  # bytes: the scanner only looks for ASCII, and multibyte indexing costs more

emit() {
  local out=() f
  for f; do
    f=${f//$'\t'/ }
    out+=("${f//$'\n'/ }")
  done
  local IFS=$'\t'
  printf '%s\n' "${out[*]}"
}

folder() {  # dirname
  if [[ $1 == */* ]]; then printf '%s' "${1%/*}"; else printf .; fi
}

MARK=$'\x01'  # in a word's text: the script's folder, from a dirname idiom
entry_dir=.
uses_extglob=0

# Resolves one `source` argument the way bash would at run time (cwd /work) and prints its record.
report_source() {
  local file=$1 text=$2 dynamic=$3 line=$4 path dir
  if [[ $text == "$MARK"[0S]/* && $dynamic == 0 && ${text:2} != *"$MARK"* ]]; then
    dir=$entry_dir
    [[ ${text:1:1} == S ]] && dir=$(folder "$file")
    path=$dir${text:2}
  elif [[ $dynamic == 1 || $text == *"$MARK"* || -z $text ]]; then
    return
  else
    path=$text
  fi
  while [[ $path == ./* ]]; do path=${path#./}; done
  local available=0 d
  if [[ $path == */* ]]; then
    [[ -e $path && ! -d $path ]] && available=1
  else
    # No slash: bash searches PATH first (sourcepath), then the current directory.
    for d in /usr/local/bin /usr/bin /bin .; do
      if [[ -e $d/$path && ! -d $d/$path ]]; then available=1; break; fi
    done
  fi
  [[ -n ${seen[$path]:-} ]] && return
  seen[$path]=1
  emit import "$path" "$line" "$available"
}

# The scanner. Frames: T the script, C $( ) or <( ), B ` `, D "…", S '…', E $'…', P ${…},
# A $(( )) or (( )). T, C and B hold commands (words, command position); the others are parts of
# the current word. ctext[f] is the raw text inside frame f (for the dirname idioms; T keeps none).
scan() {
  local file=$1 lineno=0 line s n i c
  local -a ft=(T) lit=(1) cp=(1) pend=('') inw=(0) wtext=('') wdyn=(0) wline=(0) ctext=('') \
    depth=(0) opener=('')
  local top=0 k=0 cont=0
  local -a hq=() hstrip=()
  declare -gA seen=()

  # k: the innermost command frame (T, C or B).
  find_k() {
    k=$top
    while [[ ${ft[k]} != [TCB] ]]; do ((k--)); done
  }
  push() {  # type opener
    local parent=$top
    ((top++))
    ft[top]=$1 opener[top]=$2 ctext[top]='' depth[top]=0
    case $1 in
      [DSE]) lit[top]=${lit[parent]} ;;
      [TCB]) lit[top]=1 cp[top]=1 pend[top]='' inw[top]=0 wtext[top]='' wdyn[top]=0 ;;
      *) lit[top]=0 ;;
    esac
    find_k
  }
  pop() {  # closer
    local t=${ft[top]} text=${ctext[top]} o=${opener[top]}
    ((top--))
    ((top)) && ctext[top]+=$o$text$1
    find_k
    # A substitution inside the current word: the word is dynamic unless it names the folder.
    if ((lit[top])) && [[ $t == [CBPA] ]]; then
      if [[ $t == [CB] && $text =~ ^[[:blank:]]*dirname[[:blank:]]+(--[[:blank:]]+)?\"?\$(0|\{0\}|BASH_SOURCE|\{BASH_SOURCE(\[0\])?\})\"?[[:blank:]]*$ ]]; then
        [[ ${BASH_REMATCH[2]} == *0* && ${BASH_REMATCH[2]} != *SOURCE* ]] && wtext[k]+=${MARK}0 || wtext[k]+=${MARK}S
      elif [[ $t == P && $text =~ ^(0|BASH_SOURCE(\[0\])?)%/\*$ ]]; then
        [[ ${BASH_REMATCH[1]} == 0 ]] && wtext[k]+=${MARK}0 || wtext[k]+=${MARK}S
      else
        wdyn[k]=1
      fi
    elif [[ $t == A && ${ft[top]} == [TCB] && ${inw[top]} == 0 ]]; then
      cp[top]=0  # an arithmetic command (( )) is a whole command
    fi
  }
  put() {  # raw [literal value]
    ((top)) && ctext[top]+=$1
    ((lit[top] && inw[k])) && wtext[k]+=${2-$1}
    ((i += ${#1}))
  }
  end_word() {
    ((inw[k])) || return 0
    inw[k]=0
    local w=${wtext[k]} dyn=${wdyn[k]}
    case ${pend[k]} in
      src)
        if [[ $w == -- ]]; then return; fi
        report_source "$file" "$w" "$dyn" "${wline[k]}"
        pend[k]=args
        return ;;
      redir) pend[k]=''; return ;;
      heredoc0 | heredoc1)
        hq+=("$w") hstrip+=("${pend[k]#heredoc}")
        pend[k]=''
        return ;;
      opts)
        if [[ $w == -* ]]; then return; fi
        pend[k]='' ;;
    esac
    if ((cp[k] == 0)); then
      case ${pend[k]}:$w in
        shopt:-s) pend[k]=shopt-s ;;
        shopt-s:extglob) uses_extglob=1 ;;
        *:'{') cp[k]=1 ;;  # `function f { …`: the group's body holds commands
      esac
      return
    fi
    if ((dyn == 0)) && [[ $w == [A-Za-z_]*([A-Za-z0-9_])?(\[*\])?(+)=* ]]; then
      return  # an assignment before the command
    fi
    case $w in
      if | then | else | elif | do | while | until | '!' | '{' | coproc) ;;
      command | builtin | time) pend[k]=opts ;;
      source | .) cp[k]=0 pend[k]=src ;;
      for | select) cp[k]=0 pend[k]=for ;;
      shopt) cp[k]=0 pend[k]=shopt ;;
      *) cp[k]=0 ;;
    esac
  }
  operator() {  # after ; & | ( ) and newlines a command may follow
    end_word
    cp[k]=1 pend[k]=''
  }

  local b w buf more
  while IFS= read -r line || [[ -n $line ]]; do
    ((lineno++))
    if ((hdoc_open)); then  # a heredoc's body: data up to its delimiter line
      s=$line
      [[ ${hstrip[0]} == 1 ]] && s=${s##+($'\t')}
      if [[ $s == "${hq[0]}" ]]; then
        hq=("${hq[@]:1}") hstrip=("${hstrip[@]:1}")
        ((${#hq[@]})) || hdoc_open=0
      fi
      continue
    fi
    cont=0
    # ${var:i:w} costs the whole value's length: a long line is fed 4 KiB at a time, the
    # next piece appended while a few characters are left (no decision needs more than 3).
    buf=${line:0:4096} more=${line:4096}
    n=${#buf} i=0
    # Globs rather than [[ =~ ]]: bash compiles a regex at every test, several times slower.
    while ((i < n)) || [[ -n $more ]]; do
      if ((n - i < 8)) && [[ -n $more ]]; then
        buf=${buf:i}${more:0:4096} more=${more:4096}
        n=${#buf} i=0
      fi
      s=${buf:i:200}
      c=${s:0:1}
      case ${ft[top]} in
      [TCB])
        if ((inw[k] == 0)); then
          case $s in
            [[:blank:]]*) b=${s%%[![:blank:]]*}; put "$b"; continue ;;
            '#'*) i=n more=''; continue ;;
            '\') ((i++)); cont=1; continue ;;  # continued between words
            '`'*)
              if [[ ${ft[top]} == B ]]; then ((i++)); pop '`'; continue; fi ;;
            ')'*)
              if [[ ${ft[top]} == C && ${depth[top]} == 0 ]]; then ((i++)); pop ')'; continue; fi ;;
            [\<\>]'('*)  # process substitution: a word holding commands
              inw[k]=1 wtext[k]='' wdyn[k]=1 wline[k]=$lineno
              put "${s:0:2}"; push C "${s:0:2}"; continue ;;
            '(('*)
              if ((cp[k])) || [[ ${pend[k]} == for ]]; then put '(('; push A '(('; continue; fi ;;
          esac
          case $s in
            *([0-9])@(<<-|<<<|<<|&>>|&>|>>|>\||<>|<&|>&|<|>)*)
              b=${s%%[!0-9]*} w=${s:${#b}}
              case $w in
                '<<<'*) w='<<<' pend[k]=redir ;;
                '<<-'*) w='<<-' pend[k]=heredoc1 ;;
                '<<'*) w='<<' pend[k]=heredoc0 ;;
                '&>>'*) w='&>>' pend[k]=redir ;;
                @('&>'|'>>'|'>|'|'<>'|'<&'|'>&')*) w=${w:0:2} pend[k]=redir ;;
                *) w=${w:0:1} pend[k]=redir ;;
              esac
              put "$b$w"; continue ;;
            ';;&'* | ';;'* | ';&'* | '&&'* | '||'* | '|&'*) operator; put "${s:0:2}"; [[ $s == ';;&'* ]] && put '&'; continue ;;
            [\;\&\|]*) operator; put "$c"; continue ;;
            '('*) operator; ((depth[top]++)); put '('; continue ;;
            ')'*) operator; ((depth[top] > 0)) && ((depth[top]--)); put ')'; continue ;;
          esac
          inw[k]=1 wtext[k]='' wdyn[k]=0 wline[k]=$lineno
        fi
        # Inside a word.
        w=${s%%[][:blank:]\\\"\'\`\$\;\&\|\(\)\<\>*?]*}
        if [[ -n $w ]]; then put "$w"; continue; fi
        case $c in
          [[:blank:]\;\&\|\<\>\)]) end_word; continue ;;
          '(')
            if [[ ${wtext[k]} == [A-Za-z_]*([A-Za-z0-9_])?(\[*\])?(+)= ]]; then
              put '('; push C '('; cp[top]=0; continue  # an array assignment's elements
            fi
            end_word; continue ;;
          '`') if [[ ${ft[top]} == B ]]; then end_word; continue; fi ;;
          [][*?]) wdyn[k]=1; put "$c"; continue ;;  # a glob
        esac
        ;;
      D)
        w=${s%%[\"\\\`\$]*}
        if [[ -n $w ]]; then put "$w"; continue; fi
        if [[ $c == '"' ]]; then ((i++)); pop '"'; continue; fi
        if [[ $c == '\' && -n ${s:1:1} && ${s:1:1} != [\$\`\"\\] ]]; then put '\'; continue; fi
        ;;
      S)
        w=${s%%\'*}
        if [[ -n $w ]]; then put "$w"; continue; fi
        ((i++)); pop "'"; continue
        ;;
      E)
        w=${s%%[\'\\]*}
        if [[ -n $w ]]; then put "$w"; continue; fi
        if [[ $c == "'" ]]; then ((i++)); pop "'"; continue; fi
        put "${s:0:2}"; continue
        ;;
      P)
        w=${s%%[\{\}\\\"\'\`\$]*}
        if [[ -n $w ]]; then put "$w"; continue; fi
        case $c in
          '{') ((depth[top]++)); put '{'; continue ;;
          '}')
            if ((depth[top] == 0)); then ((i++)); pop '}'; continue; fi
            ((depth[top]--)); put '}'; continue ;;
          "'")  # quotes a string inside ${…}, but not when the ${…} sits in "…"
            if [[ ${ft[top - 1]} != D ]]; then ((i++)); push S "'"; continue; fi
            put "'"; continue ;;
        esac
        ;;
      A)
        w=${s%%[\(\)\$\`]*}
        if [[ -n $w ]]; then put "$w"; continue; fi
        case $c in
          '(') ((depth[top]++)); put '('; continue ;;
          ')')
            if ((depth[top] == 0)) && [[ ${s:1:1} == ')' ]]; then ((i += 2)); pop '))'; continue; fi
            ((depth[top] > 0)) && ((depth[top]--))
            put ')'; continue ;;
        esac
        ;;
      esac
      # Shared by words, "…", ${…} and $((…)): escapes, quotes and expansions.
      case $s in
        \\)  # a line continuation: the next line goes on with the same word or command
          ((i++)); cont=1 ;;
        \\*) put "${s:0:2}" "${s:1:1}" ;;
        \$\'*) ((i += 2)); push E "\$'" ;;
        \'*) ((i++)); push S "'" ;;
        \"*) ((i++)); push D '"' ;;
        \$\(\(*) ((i += 3)); push A '$((' ;;
        \$\(*) ((i += 2)); push C '$(' ;;
        \`*) ((i++)); push B '`' ;;
        \$\{*) ((i += 2)); push P '${' ;;
        \$[A-Za-z_]*)
          w=${s:1} w=${w%%[!A-Za-z0-9_]*}
          ((lit[top])) && wdyn[k]=1
          ((top)) && ctext[top]+=\$$w; ((i += ${#w} + 1)) ;;
        \$[0-9@*#?\$!-]*)
          ((lit[top])) && wdyn[k]=1
          ((top)) && ctext[top]+=${s:0:2}; ((i += 2)) ;;
        *) put "$c" ;;
      esac
    done
    ((cont)) && continue
    # The end of the line: a command separator, or part of a quoted string.
    case ${ft[top]} in
      [TCB])
        operator
        ((top)) && ctext[top]+=$'\n'
        ((${#hq[@]})) && hdoc_open=1 ;;
      *) ctext[top]+=$'\n'; ((lit[top] && inw[k])) && wtext[k]+=$'\n' ;;
    esac
  done < "$1"
  end_word
}

# The file to check; the user's other files are beside it in /work.
f=${1-}
while [[ $f == ./* ]]; do f=${f#./}; done
f=${f#"$PWD/"}
[[ -n $f && -f $f ]] || exit 0
entry_dir=$(folder "$f")
hdoc_open=0
scan "$f"
# A script that turns extglob on gets its patterns parsed as they will be at run time.
opts=(-p -n)
((uses_extglob)) && opts+=(-O extglob)
while IFS= read -r l; do
  [[ $l == "$f: line "+([0-9])": "* ]] || continue
  l=${l#"$f: line "}
  msg=${l#*: }
  # Skip warnings and the echo of the offending source line (`…').
  [[ $msg == warning:* || $msg == '`'* ]] && continue
  emit syntax_error "$f" "${l%%:*}" 0 "$msg"
  break
done < <(LC_ALL=C.UTF-8 /usr/bin/bash "${opts[@]}" "$f" 2>&1 >/dev/null)
exit 0
