# polyrun check for R: the check protocol (docs/languages.md) on stdout.
#
# Usage: R -f check.R --args ENTRY  (a path relative to the cwd, /work). R's own parser reads
# the file; nothing of it is evaluated. Imports are
#  - packages: library(), require(), requireNamespace(), loadNamespace() with a literal name,
#    and every pkg::name / pkg:::name; available when installed in the library paths
#    (system.file() finds the package without loading it);
#  - files: source() / sys.source() of a literal path, resolved like R does against the
#    working directory (/work); available when the file is there.

emit <- function(...) {
  fields <- gsub("[\t\r\n]", " ", as.character(c(...)))
  cat(paste(fields, collapse = "\t"), "\n", sep = "")
}

file <- commandArgs(trailingOnly = TRUE)[1L]
if (is.na(file)) quit(save = "no")

exprs <- tryCatch(parse(file, keep.source = TRUE), error = identity)
if (inherits(exprs, "error")) {
  # "main.R:2:10: unexpected ')'" then the lines around it; "…:3:0:" at the end of input.
  msg <- conditionMessage(exprs)
  pos <- regmatches(msg, regexec("^([^\n]*):([0-9]+):([0-9]+): ([^\n]*)", msg))[[1L]]
  if (length(pos) == 5L) {
    emit("syntax_error", file, pos[3L], pos[4L], pos[5L])
  } else {
    at <- regmatches(msg, regexec("line ([0-9]+)", msg))[[1L]]
    emit("syntax_error", file, if (length(at) == 2L) at[2L] else 1L, 0L, sub("\n.*", "", msg))
  }
  quit(save = "no")
}

pd <- utils::getParseData(exprs, includeText = TRUE)
if (is.null(pd) || !nrow(pd)) quit(save = "no")
pd <- pd[order(pd$line1, pd$col1), ]

# The value of an argument node that is a literal: a string, or a bare name (library(stats)).
literal <- function(id, allow_symbol) {
  kids <- pd[pd$parent == id, ]
  if (nrow(kids) != 1L) return(NA_character_)
  if (kids$token == "STR_CONST") return(str2lang(kids$text))
  if (allow_symbol && kids$token == "SYMBOL") return(kids$text)
  NA_character_
}

# The first argument of the call whose function-name token is `row` (by position, or by
# the name `arg`); NA when it is not a literal.
first_argument <- function(row, arg, allow_symbol) {
  call <- pd$parent[pd$id == pd$parent[row]]
  kids <- pd[pd$parent == call, ]
  kids <- kids[-1L, ]  # the function
  kids <- kids[!kids$token %in% c("'('", "')'"), ]
  named <- which(kids$token == "SYMBOL_SUB")
  char_only <- kids$token == "SYMBOL_SUB" & kids$text == "character.only"
  if (any(char_only)) allow_symbol <- FALSE
  hit <- named[kids$text[named] == arg]
  if (length(hit)) return(literal(kids$id[hit[1L] + 2L], allow_symbol))
  # Positional: the first expr not preceded by `name =`.
  for (i in seq_len(nrow(kids))) {
    if (kids$token[i] != "expr") next
    if (i >= 2L && kids$token[i - 1L] == "EQ_SUB") next
    return(literal(kids$id[i], allow_symbol))
  }
  NA_character_
}

installed <- function(pkg) nzchar(system.file(package = pkg))

found <- list()
note <- function(name, line, available) {
  if (!is.na(name) && nzchar(name) && is.null(found[[name]])) {
    found[[name]] <<- TRUE
    emit("import", name, line, if (available) 1L else 0L)
  }
}

packages <- c(library = "package", require = "package", requireNamespace = "package",
              loadNamespace = "package")
files <- c(source = "file", sys.source = "file")
for (row in seq_len(nrow(pd))) {
  token <- pd$token[row]
  text <- pd$text[row]
  if (token == "SYMBOL_PACKAGE") {
    note(text, pd$line1[row], installed(text))
  } else if (token == "SYMBOL_FUNCTION_CALL" && text %in% names(packages)) {
    pkg <- first_argument(row, packages[[text]], allow_symbol = text %in% c("library", "require"))
    if (!is.na(pkg)) note(pkg, pd$line1[row], installed(pkg))
  } else if (token == "SYMBOL_FUNCTION_CALL" && text %in% names(files)) {
    path <- first_argument(row, files[[text]], allow_symbol = FALSE)
    if (!is.na(path)) {
      name <- sub("^\\./", "", path)
      note(name, pd$line1[row], file.exists(path) && !dir.exists(path))
    }
  }
}
