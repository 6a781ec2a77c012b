# polyrun's warm bootstrap for R (docs/performance.md, "Warm pools").
#
# Started ahead of need in a fresh sandbox with [run]'s environment and limits, as
# `R --vanilla --no-echo -f /lang/warm.R --args`: R and its default packages are loaded, which is
# most of a cold run (~110 ms). Once up it writes "R" on fd 3 and closes it, then reads one run
# from stdin: a line with the byte length of a JSON header, the header {"entry", "args",
# "files": [{"name", "size", "executable"}]}, the files' bytes in that order, and then the
# program's own stdin. It writes the files into /work and runs the entry as [run] does: it makes
# commandArgs() return what `R --vanilla --no-echo --file=ENTRY -f /lang/run.R --args ARGS` would,
# runs run.R's own preparation, and ends as run.R ends, so the program runs from R's top level.
#
# Stdin is read through a second descriptor of the same pipe, unbuffered (a fifo connection reads
# with read(2)), so that file("stdin") starts exactly at the program's stdin. The header is parsed
# here: base R has no JSON reader, and loading a package would show in loadedNamespaces().

.Internal(eval(quote({
  # The byte compiler stays off while the bootstrap works (compiling its closures on their first
  # calls took 60 ms of the run) and is back at R's level for the program and run.R.
  jit <- compiler::enableJIT(0)
  # Everything that could fail before the run is done before "R": a bootstrap that fails says
  # why on stderr, and the pool reports it.
  input <- fifo("/proc/self/fd/0", "rb", blocking = TRUE)
  # R has no close(2) of its own: parallel's, through its shared library alone (no namespace is
  # loaded, and the library is unloaded again).
  parallel_so <- file.path(R.home("library"), "parallel", "libs", "parallel.so")
  dyn.load(parallel_so)
  ready <- fifo("/proc/self/fd/3", "wb")
  writeBin(charToRaw("R"), ready)
  close(ready)
  .Call("mc_close_fds", 3L, PACKAGE = "parallel")
  dyn.unload(parallel_so)

  read_exact <- function(n) {
    chunks <- list()
    left <- n
    while (left > 0) {
      got <- readBin(input, "raw", left)
      if (!length(got)) stop("polyrun warm: stdin ended inside the run")
      chunks[[length(chunks) + 1L]] <- got
      left <- left - length(got)
    }
    if (length(chunks)) unlist(chunks, use.names = FALSE) else raw(0)
  }
  line <- raw(0)
  while (length(byte <- read_exact(1L)) && byte != as.raw(10L)) line <- c(line, byte)

  # The header's JSON (as the engine writes it: objects, arrays, strings, integers, booleans),
  # parsed byte by byte; strings are UTF-8.
  text <- read_exact(as.integer(rawToChar(line)))
  pos <- 1L
  peek <- function() if (pos <= length(text)) rawToChar(text[pos]) else ""
  skip <- function() while (peek() %in% c(" ", "\t", "\r", "\n")) pos <<- pos + 1L
  expect <- function(char) {
    skip()
    if (peek() != char) stop(sprintf("polyrun warm: bad header at byte %d", pos))
    pos <<- pos + 1L
  }
  utf8 <- function(cp) charToRaw(enc2utf8(intToUtf8(cp)))
  string <- function() {
    expect("\"")
    out <- raw(0)
    repeat {
      if (pos > length(text)) stop("polyrun warm: unterminated string in the header")
      b <- text[pos]
      pos <<- pos + 1L
      if (b == as.raw(0x22)) break
      if (b != as.raw(0x5c)) {
        out <- c(out, b)
        next
      }
      e <- rawToChar(text[pos])
      pos <<- pos + 1L
      if (e == "u") {
        cp <- strtoi(rawToChar(text[pos:(pos + 3L)]), 16L)
        pos <<- pos + 4L
        if (cp >= 0xD800 && cp <= 0xDBFF && pos + 5L <= length(text) &&
            rawToChar(text[pos:(pos + 1L)]) == "\\u") {
          low <- strtoi(rawToChar(text[(pos + 2L):(pos + 5L)]), 16L)
          cp <- 0x10000 + (cp - 0xD800) * 1024 + (low - 0xDC00)
          pos <<- pos + 6L
        }
        out <- c(out, utf8(cp))
      } else {
        out <- c(out, charToRaw(switch(e, b = "\b", f = "\f", n = "\n", r = "\r", t = "\t", e)))
      }
    }
    s <- rawToChar(out)
    Encoding(s) <- "UTF-8"
    s
  }
  items <- function(close, item) {
    pos <<- pos + 1L
    skip()
    if (peek() == close) {
      pos <<- pos + 1L
      return(invisible())
    }
    repeat {
      item()
      skip()
      sep <- peek()
      pos <<- pos + 1L
      if (sep == close) break
      if (sep != ",") stop(sprintf("polyrun warm: bad header at byte %d", pos))
    }
  }
  value <- function() {
    skip()
    switch(peek(),
      "\"" = string(),
      "{" = {
        object <- list()
        items("}", function() {
          key <- string()
          expect(":")
          object[key] <<- list(value())
        })
        object
      },
      "[" = {
        array <- list()
        items("]", function() array[[length(array) + 1L]] <<- value())
        array
      },
      {
        rest <- rawToChar(text[pos:min(length(text), pos + 24L)])
        word <- regmatches(rest, regexpr("^(true|false|null|-?[0-9]+)", rest))
        if (!length(word)) stop(sprintf("polyrun warm: bad header at byte %d", pos))
        pos <<- pos + nchar(word)
        switch(word, true = TRUE, false = FALSE, null = NULL, as.numeric(word))
      })
  }
  header <- value()

  for (f in header$files) {
    path <- file.path("/work", f$name)
    dir.create(dirname(path), recursive = TRUE, showWarnings = FALSE)
    out <- file(path, "wb")
    writeBin(read_exact(f$size), out)
    close(out)
    Sys.chmod(path, if (isTRUE(f$executable)) "755" else "644", use_umask = FALSE)
  }
  close(input)

  # commandArgs() as [run]'s command line would have it: base's own function, with the run's
  # arguments in place of .Internal(commandArgs()), which says how this bootstrap was started.
  # [warm]'s command is [run]'s up to its --file=, then "-f warm.R --args".
  own <- .Internal(commandArgs())
  f_at <- match("-f", own)
  run_r <- file.path(dirname(own[f_at + 1L]), "run.R")
  cold <- c(own[seq_len(f_at - 1L)], paste0("--file=", header$entry), "-f", run_r, "--args",
            as.character(unlist(header$args)))
  command_args <- eval(bquote(function(trailingOnly = FALSE) {
    args <- .(cold)
    if (trailingOnly) {
      m <- match("--args", args, 0L)
      if (m) args[-seq_len(m)] else character()
    } else args
  }))
  environment(command_args) <- .BaseNamespaceEnv
  for (env in list(.BaseNamespaceEnv, baseenv())) {
    unlockBinding("commandArgs", env)
    assign("commandArgs", command_args, envir = env)
    lockBinding("commandArgs", env)
  }

  compiler::enableJIT(jit)
  # run.R's preparation (its first top-level expression): parses the entry and leaves the
  # program, a promise, in .polyrun.
  eval(parse(run_r, keep.source = FALSE)[[1L]], globalenv())
}), new.env(parent = .BaseNamespaceEnv), NULL))
# Runs the program at the top level, as run.R's last line does (its first statement removes
# .polyrun again).
invisible(.polyrun$program)
