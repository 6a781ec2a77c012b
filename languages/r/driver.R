# polyrun's R session driver (docs/sessions.md). relay.py starts it and holds the session's
# channels; this side opens the relay's FIFOs only to read one command or to write frames, so
# that nothing the user's code starts inherits them (see relay.py).
#
# Each cell is parsed whole (with source references, named "<cell N>"), then its top-level
# expressions are evaluated in the global environment one by one, as Rscript would: the value
# of a visible expression is printed, except the last one's, which becomes the result frame.
# Warnings are printed after each top-level expression (options(warn = 0), R's deferred
# warnings never come: the driver's loop is a top-level call that does not end).
#
# Interrupts are suspended in the driver's own code and allowed only while the user's code
# runs: an interrupt that arrives between cells stays pending and is discarded when the next
# cell starts. Note that R ignores SIGINT while system() waits: an interrupt then ends the
# child, not the cell.
#
# Plots: the default device (options(device)) is a PNG file per plot, opened only when the
# cell draws; after the cell its pages become display frames.
#
# Input: readline() and readLines() on stdin() / file("stdin") ask the client for lines
# (input_request), through functions on the search path ("polyrun:input") that mask base's.

local({
  `%||%` <- function(a, b) if (is.null(a)) b else a
  dir <- commandArgs(trailingOnly = TRUE)[[1L]]
  command_fifo <- file.path(dir, "commands")
  frame_fifo <- file.path(dir, "frames")
  plot_dir <- file.path(dir, "plots")
  dir.create(plot_dir)
  empty_object <- structure(list(), names = character())
  state <- new.env(parent = emptyenv())
  state$cell <- 0L      # cells executed
  state$id <- NULL      # the execution in progress, if any
  state$devices <- integer()
  state$plots <- 0L
  state$warnings <- list()
  state$trace <- list()

  # ---- JSON. Frames are few and small in structure: a direct encoder is ten times faster
  # than jsonlite::toJSON, which remains the fallback for strings with rare control characters.

  json_string <- function(s) {
    s <- enc2utf8(as.character(s))
    if (!validUTF8(s)) s <- iconv(s, "UTF-8", "UTF-8", sub = "\uFFFD")
    if (grepl("[\001-\010\013\014\016-\037]", s, useBytes = TRUE)) {
      return(as.character(jsonlite::toJSON(s, auto_unbox = TRUE)))
    }
    s <- gsub("\\", "\\\\", s, fixed = TRUE)
    s <- gsub("\"", "\\\"", s, fixed = TRUE)
    s <- gsub("\n", "\\n", s, fixed = TRUE)
    s <- gsub("\r", "\\r", s, fixed = TRUE)
    s <- gsub("\t", "\\t", s, fixed = TRUE)
    paste0("\"", s, "\"")
  }

  # Named lists become objects, other lists arrays; NULL and NA become null.
  to_json <- function(x) {
    if (is.null(x)) return("null")
    if (is.list(x)) {
      items <- vapply(x, to_json, "")
      if (is.null(names(x))) return(paste0("[", paste(items, collapse = ","), "]"))
      if (!length(x)) return("{}")
      return(paste0("{", paste0(vapply(names(x), json_string, ""), ":", items, collapse = ","), "}"))
    }
    if (is.na(x)) return("null")
    if (is.logical(x)) return(if (x) "true" else "false")
    if (is.numeric(x)) return(format(x, scientific = FALSE))
    json_string(x)
  }

  # ---- the channels

  send <- function(...) {
    lines <- vapply(list(...), to_json, "")
    flush(stdout())  # the user's output reaches fd 1 before the frames that follow it
    con <- fifo(frame_fifo, "w", blocking = TRUE)
    writeLines(lines, con, useBytes = TRUE)
    close(con)
  }

  protocol_error <- function(message) list(type = "protocol_error", message = message)

  # The next command, read byte by byte (a FIFO connection's way): nothing past the line is
  # consumed, so closing the connection loses nothing.
  read_command <- function() {
    con <- fifo(command_fifo, "r", blocking = TRUE)
    line <- base::readLines(con, n = 1L, warn = FALSE, encoding = "UTF-8")
    close(con)
    if (!length(line)) return(list(type = "polyrun.eof"))
    cmd <- tryCatch(jsonlite::parse_json(line), error = function(e) NULL)
    if (identical(cmd$type, "polyrun.file")) {
      path <- cmd$path
      cmd <- tryCatch(jsonlite::parse_json(readChar(path, file.size(path), useBytes = TRUE)),
                      error = function(e) NULL)
      unlink(path)
    }
    if (!is.list(cmd) || !is.character(cmd$type)) {
      send(protocol_error("a command must be a JSON object with a type"))
      return(list(type = "polyrun.invalid"))
    }
    cmd
  }

  # Raises the interrupt SIGINT left pending (R checks every 1000 evaluation steps), or one of
  # its own should the flag be gone already.
  raise_interrupt <- function() {
    allowInterrupts(for (i in 1:1001) NULL)
    signalCondition(structure(class = c("interrupt", "condition"),
                              list(message = "", call = NULL)))
  }

  # ---- input

  # One line from the client, or NULL at end of input.
  ask <- function(prompt = "", password = FALSE) {
    suspendInterrupts(send(list(type = "input_request", prompt = paste(prompt, collapse = ""),
                                password = password)))
    repeat {
      cmd <- suspendInterrupts(read_command())
      type <- cmd$type
      if (type == "input_reply") {
        return(if (isTRUE(cmd$eof)) NULL else paste(as.character(cmd$value %||% ""), collapse = ""))
      }
      if (type == "polyrun.sigint") {
        raise_interrupt()
      } else if (type == "polyrun.eof") {
        quit(save = "no", status = 0L)
      } else if (type != "polyrun.invalid") {
        suspendInterrupts(send(protocol_error("busy: only input_reply is accepted now")))
      }
    }
  }

  is_stdin <- function(con) {
    if (is.character(con)) return(identical(con, "stdin"))
    inherits(con, "connection") &&
      identical(tryCatch(summary(con)$description, error = function(e) ""), "stdin")
  }

  input <- new.env()
  input$readline <- function(prompt = "") ask(prompt) %||% ""
  input$readLines <- function(con = stdin(), n = -1L, ok = TRUE, warn = TRUE,
                              encoding = "unknown", skipNul = FALSE) {
    if (!is_stdin(con)) return(base::readLines(con, n, ok, warn, encoding, skipNul))
    out <- character()
    while (n < 0L || length(out) < n) {
      line <- ask("")
      if (is.null(line)) break
      out <- c(out, line)
    }
    out
  }
  attach(input, name = "polyrun:input", warn.conflicts = FALSE)

  # ---- plots

  if (capabilities("cairo")) {
    options(bitmapType = "cairo", device = function(...) {
      state$plots <- state$plots + 1L
      grDevices::png(file.path(plot_dir, sprintf("plot-%05d-%%03d.png", state$plots)),
                     width = 7, height = 5, units = "in", res = 96, type = "cairo")
      state$devices <- c(state$devices, grDevices::dev.cur())
    })
  }

  # Closes the devices the cell opened; their pages as display frames.
  plot_frames <- function() {
    if (!length(state$devices)) return(list())
    for (d in intersect(state$devices, grDevices::dev.list())) grDevices::dev.off(d)
    state$devices <- integer()
    lapply(sort(list.files(plot_dir, full.names = TRUE)), function(f) {
      png <- readBin(f, "raw", file.size(f))
      unlink(f)
      list(type = "display", metadata = empty_object,
           data = list("image/png" = gsub("\n", "", jsonlite::base64_enc(png), fixed = TRUE),
                       "text/plain" = "<plot>"))
    })
  }

  # ---- values, warnings, errors

  show_value <- function(v) if (isS4(v)) methods::show(v) else print(v)

  html_escape <- function(x) {
    x <- gsub("&", "&amp;", x, fixed = TRUE)
    x <- gsub("<", "&lt;", x, fixed = TRUE)
    gsub(">", "&gt;", x, fixed = TRUE)
  }

  html_table <- function(df, max_rows = 500L) {
    shown <- utils::head(df, max_rows)
    cells <- as.matrix(format(shown))
    row <- function(i) {
      paste0("<tr><th>", html_escape(rownames(shown)[i]), "</th>",
             paste0("<td>", html_escape(cells[i, ]), "</td>", collapse = ""), "</tr>\n")
    }
    paste0(
      "<table>\n<thead><tr><th></th>",
      paste0("<th>", html_escape(names(df)), "</th>", collapse = ""), "</tr></thead>\n<tbody>\n",
      paste(vapply(seq_len(nrow(cells)), row, ""), collapse = ""),
      "</tbody>\n</table>",
      if (nrow(df) > max_rows) sprintf("\n<p>%d more rows</p>", nrow(df) - max_rows))
  }

  # The last value's MIME bundle, or NULL when printing it only drew a plot (ggplot2, lattice).
  result_data <- function(v) {
    devices <- length(state$devices)
    text <- paste(utils::capture.output(show_value(v)), collapse = "\n")
    if (!nzchar(text) && length(state$devices) > devices) return(NULL)
    data <- list("text/plain" = text)
    if (is.data.frame(v)) data[["text/html"]] <- tryCatch(html_table(v), error = function(e) NULL)
    data
  }

  # A condition's call, unless it is only the driver's eval of a top-level expression.
  user_call <- function(cond) {
    call <- conditionCall(cond)
    if (is.null(call) || identical(call, quote(eval(block, globalenv())))) NULL else call
  }

  # "In f(x) : message", or the message alone for a top-level warning().
  warning_text <- function(w, prefix) {
    call <- user_call(w)
    if (is.null(call)) conditionMessage(w) else
      paste0(prefix, paste(deparse(call, nlines = 1L), collapse = ""), " : ", conditionMessage(w))
  }

  # options(warn): below 0 ignored, 0 deferred (print_warnings), 1 printed at once, 2 and more
  # left to R, which makes them errors.
  on_warning <- function(w) {
    warn <- getOption("warn", 0L)
    if (warn >= 2L) return()
    if (warn == 0L) state$warnings <- c(state$warnings, list(w))
    if (warn == 1L) {
      text <- warning_text(w, "in ")
      cat(if (is.null(user_call(w))) "Warning: " else "Warning ", text, "\n", sep = "",
          file = stderr())
    }
    invokeRestart("muffleWarning")
  }

  print_warnings <- function() {
    w <- state$warnings
    if (!length(w)) return()
    state$warnings <- list()
    text <- vapply(w, warning_text, "", prefix = "In ")
    more <- if (length(text) > 10L) sprintf("(and %d more)\n", length(text) - 10L)
    if (length(text) > 1L) text <- paste0(seq_along(text), ": ", text)
    cat(if (length(text) == 1L) "Warning message:\n" else "Warning messages:\n",
        paste0(utils::head(text, 10L), "\n"), more, sep = "", file = stderr())
  }

  # The positions in cells on the stack when the error was signalled, outermost first. Call i
  # was made at its srcref, from inside the function of call i - 1 (as in run.R).
  on_error <- function(e) {
    n <- sys.nframe() - 1L
    calls <- sys.calls()[seq_len(n)]
    trace <- list()
    for (i in seq_len(n)) {
      sr <- attr(calls[[i]], "srcref")
      file <- if (is.null(sr)) NULL else attr(sr, "srcfile")$filename
      if (is.null(file) || !startsWith(file, "<cell ")) next
      where <- sprintf("at %s:%d:%d", file, sr[1L], sr[5L])
      caller <- if (i > 1L) sys.function(i - 1L) else NULL
      if (is.function(caller) && !is.null(attr(caller, "srcref"))) {
        fn <- calls[[i - 1L]][[1L]]
        where <- paste0(where, " in ", if (is.symbol(fn)) as.character(fn) else "<anonymous>", "()")
      }
      trace <- c(trace, list(list(file = file, line = sr[1L], column = sr[5L], text = where)))
    }
    state$trace <- trace
  }

  error_frame <- function(name, message, line = NA, column = NA, traceback = list()) {
    list(type = "error", name = name, message = message, line = line, column = column,
         traceback = traceback)
  }

  # ---- commands

  execute <- function(cmd) {
    state$cell <- state$cell + 1L
    state$id <- cmd$id %||% ""
    on.exit(state$id <- NULL)
    code <- paste(as.character(cmd$code %||% ""), collapse = "")
    name <- sprintf("<cell %d>", state$cell)
    lines <- strsplit(code, "\n", fixed = TRUE)[[1L]]
    exprs <- tryCatch(parse(text = lines, srcfile = srcfilecopy(name, lines), keep.source = TRUE),
                      error = identity)
    if (inherits(exprs, "error")) {
      msg <- conditionMessage(exprs)
      pos <- regmatches(msg, regexec("^<cell [0-9]+>:([0-9]+):([0-9]+): ([^\n]*)", msg))[[1L]]
      frame <- if (length(pos) == 4L) {
        error_frame("parseError", pos[4L], as.integer(pos[2L]), max(1L, as.integer(pos[3L])))
      } else error_frame("parseError", msg)
      return(send(frame, list(type = "done", id = state$id, status = "error")))
    }

    srcrefs <- attr(exprs, "srcref")
    result <- NULL
    state$trace <- list()
    state$line <- NA_integer_
    # A SIGINT that came while the driver was idle must not interrupt this cell.
    allowInterrupts(tryCatch(for (i in 1:1001) NULL, interrupt = function(e) NULL))
    outcome <- allowInterrupts(tryCatch(withCallingHandlers({
      for (i in seq_along(exprs)) {
        state$line <- srcrefs[[i]][1L]
        # Evaluated as `{ expr }` carrying expr's srcref, which R makes the current position:
        # the calls the expression makes then carry their place in the cell.
        block <- call("{", exprs[[i]])
        attr(block, "srcref") <- list(NULL, srcrefs[[i]])
        r <- withVisible(eval(block, globalenv()))
        if (r$visible) {
          if (i == length(exprs)) result <- result_data(r$value) else show_value(r$value)
        }
        print_warnings()
      }
      NULL
    }, error = on_error, warning = on_warning), error = identity, interrupt = identity))
    print_warnings()

    frames <- plot_frames()
    if (!is.null(result)) frames <- c(frames, list(list(type = "result", data = result)))
    status <- "ok"
    if (inherits(outcome, "interrupt")) {
      status <- "interrupted"
      frames <- c(frames, list(error_frame("interrupt", "interrupted")))
    } else if (inherits(outcome, "error")) {
      status <- "error"
      trace <- state$trace
      here <- Filter(function(f) f$file == name, trace)
      at <- if (length(here)) here[[length(here)]] else list(line = state$line, column = NA)
      frames <- c(frames, list(error_frame(class(outcome)[1L], conditionMessage(outcome),
                                           at$line, at$column, lapply(trace, `[[`, "text"))))
    }
    do.call(send, c(frames, list(list(type = "done", id = state$id, status = status))))
  }

  complete <- function(cmd) {
    code <- paste(as.character(cmd$code %||% ""), collapse = "")
    pos <- min(as.integer(cmd$cursor_pos %||% nchar(code)), nchar(code))
    before <- substr(code, 1L, pos)
    line_start <- max(0L, regexpr("\n[^\n]*$", before))
    line <- substring(before, line_start + 1L)
    # R's own console completer (what Rgui and ESS use).
    found <- tryCatch({
      utils:::.assignLinebuffer(line)
      utils:::.assignEnd(nchar(line))
      utils:::.guessTokenFromLine()
      utils:::.completeToken()
      list(matches = utils:::.retrieveCompletions(),
           start = line_start + utils:::.CompletionEnv[["start"]])
    }, error = function(e) list(matches = character(), start = pos))
    list(type = "complete_reply", id = cmd$id, matches = as.list(found$matches),
         cursor_start = found$start, cursor_end = pos)
  }

  is_complete <- function(cmd) {
    status <- tryCatch({
      parse(text = paste(as.character(cmd$code %||% ""), collapse = ""), keep.source = FALSE)
      "complete"
    }, error = function(e) {
      if (grepl("unexpected (end of input|INCOMPLETE_STRING)", conditionMessage(e))) "incomplete"
      else "invalid"
    })
    list(type = "is_complete_reply", id = cmd$id, status = status, indent = "")
  }

  # quit() in a cell: the execution still ends with an error and done before R exits.
  reg.finalizer(state, function(s) {
    if (!is.null(s$id)) {
      send(error_frame("quit", "R quit; the session ends"),
           list(type = "done", id = s$id, status = "error"))
    }
  }, onexit = TRUE)

  # The user's own source() and parse() keep source references too, for their errors' lines.
  options(keep.source = TRUE)
  loadNamespace("jsonlite")
  suspendInterrupts({
    send(list(type = "ready"))
    repeat {
      cmd <- read_command()
      type <- cmd$type
      if (type == "polyrun.eof") break
      tryCatch(
        switch(type,
               execute = execute(cmd),
               complete = send(complete(cmd)),
               is_complete = send(is_complete(cmd)),
               inspect = send(list(type = "inspect_reply", id = cmd$id, found = FALSE,
                                   data = empty_object)),
               # A late answer, or SIGINT while idle, or an invalid line already answered.
               input_reply = , polyrun.sigint = , polyrun.invalid = NULL,
               send(protocol_error(paste("unknown command", type)))),
        error = function(e) send(protocol_error(paste("driver error:", conditionMessage(e)))))
    }
  })
  quit(save = "no", status = 0L)
})
