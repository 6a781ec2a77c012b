# polyrun's R runner: runs the user's entry as `Rscript main.R ARGS` would, but keeps source
# references so that an error can name the file, line and column of every user frame.
#
# R is started as `R --file=main.R -f /lang/run.R --args ARGS`: the last file option is the
# one R runs (this one), the first names the entry and keeps `commandArgs()` looking like
# Rscript's, and `commandArgs(trailingOnly = TRUE)` is exactly the user's arguments.
#
# On an error that nothing in the program handles, stderr gets, innermost frame first,
#   simpleError in divide(a, b) : boom      <- the condition's class, call and message
#     at main.R:2:3 in divide()             <- positions in the user's files
#     at main.R:6:1
# then R's pending warnings and "Execution halted"; the exit status is 1, as with Rscript.
# A syntax error in the entry (R 4.2's parse() signals a plain simpleError; the name says
# what failed) reads
#   parseError: unexpected ')'
#     …the lines around it…
#     at main.R:2:10
# Differences from Rscript: the whole entry is parsed before anything runs (a syntax error
# stops the program before its first line, as in most languages), and deferred warnings are
# printed when the program ends instead of after each top-level expression.
#
# The first top-level expression below prepares the run in a private environment; the second
# runs the program from R's top level (see the comment before it).

.Internal(eval(quote({
  indent <- function(text) gsub("\n", "\n  ", text, fixed = TRUE)

  report <- function(name, call, message, frames) {
    head <- if (is.null(call)) paste0(name, ": ") else
      paste0(name, " in ", paste(deparse(call, nlines = 1L), collapse = ""), " : ")
    lines <- paste0(head, indent(message))
    # A runaway recursion has thousands of frames: keep both ends.
    if (length(frames) > 60L) {
      frames <- c(frames[1:30], sprintf("  ... %d frames omitted", length(frames) - 60L),
                  frames[(length(frames) - 29L):length(frames)])
    }
    cat(lines, frames, sep = "\n", file = stderr())
  }

  # The positions of the user's code on the stack, innermost first. Call i was made at its
  # srcref, from inside the function of call i - 1 (or a file's top level).
  user_frames <- function(calls, fns) {
    out <- character()
    for (i in seq_along(calls)) {
      sr <- attr(calls[[i]], "srcref")
      file <- if (is.null(sr)) "" else attr(sr, "srcfile")$filename
      if (is.null(file) || !nzchar(file) || startsWith(file, "<")) next
      where <- sprintf("  at %s:%d:%d", file, sr[1L], sr[5L])
      caller <- if (i > 1L) fns[[i - 1L]] else NULL
      if (is.function(caller) && !is.null(attr(caller, "srcref"))) {
        fn <- calls[[i - 1L]][[1L]]
        name <- if (is.symbol(fn)) as.character(fn) else paste(deparse(fn), collapse = "")
        if (!is.symbol(fn) && (nchar(name) > 60L || grepl("function", name, fixed = TRUE)))
          name <- "<anonymous>"
        where <- paste0(where, " in ", name, "()")
      }
      out <- c(where, out)
    }
    out
  }

  # Runs last among the error handlers (it is established outermost): whatever reaches it
  # ends the program, unless it was only signalCondition()ed. The report replaces R's own
  # message; the "abort" restart then unwinds the stack (warnings print, on.exit code runs).
  on_error <- function(e) {
    n <- sys.nframe()
    if (n >= 2L && identical(sys.function(n - 1L), signalCondition)) return()
    calls <- sys.calls()[seq_len(n - 1L)]
    fns <- lapply(seq_len(n - 1L), sys.function)
    report(class(e)[1L], conditionCall(e), conditionMessage(e), user_frames(calls, fns))
    invokeRestart("abort")
  }

  args <- commandArgs()
  entry <- sub("^--file=", "", args[startsWith(args, "--file=")][1L])
  # Functions defined by the program (and by files it source()s) keep their source lines.
  options(keep.source = TRUE)
  exprs <- tryCatch(parse(entry, keep.source = TRUE), error = identity)
  if (inherits(exprs, "error")) {
    # "main.R:2:10: unexpected ')'" followed by the lines around it.
    msg <- conditionMessage(exprs)
    pos <- regmatches(msg, regexec("^([^\n]*):([0-9]+):([0-9]+): ([^\n]*)", msg))[[1L]]
    if (length(pos) == 5L) {
      rest <- sub("^[^\n]*\n?", "", msg)
      report("parseError", NULL, paste0(pos[5L], if (nzchar(rest)) "\n", rest),
             sprintf("  at %s:%s:%s", pos[2L], pos[3L], pos[4L]))
    } else {
      report("parseError", NULL, msg, character())
    }
    quit(save = "no", status = 1L)
  }
  # A global handler runs after any the program establishes, and adds no frame of its own.
  globalCallingHandlers(error = on_error)

  # The program becomes one block, { e1; show(); e2; show(); … }, forced as a promise from the
  # top level below: no function frame lies between it and R's REPL, so sys.nframe() is 0,
  # parent.frame() is the global environment, sys.call() is NULL and conditions carry the
  # calls they would under Rscript. `{` sets R's current srcref from the block's own srcref
  # list, which gives each top-level call its position in the file.
  state <- new.env(parent = emptyenv())
  show_value <- function() {
    r <- state$r
    state$r <- NULL
    if (r$visible) if (isS4(r$value)) methods::show(r$value) else print(r$value)
  }
  srcrefs <- attr(exprs, "srcref")
  body <- list(as.name("{"), quote(.Internal(remove(".polyrun", globalenv(), FALSE))))
  refs <- list(NULL, NULL)
  for (i in seq_along(exprs)) {
    body <- c(body,
              bquote(.Internal(assign("r", .Internal(withVisible(.(exprs[[i]]))), .(state), FALSE))),
              as.call(list(show_value)))
    refs <- c(refs, srcrefs[i], srcrefs[i])
  }
  body <- as.call(body)
  attr(body, "srcref") <- refs
  .Internal(delayedAssign("program", body, globalenv(), state))
  assign(".polyrun", state, envir = globalenv())
}), new.env(parent = .BaseNamespaceEnv), NULL))
# Runs the program at the top level (its first statement removes .polyrun again).
invisible(.polyrun$program)
