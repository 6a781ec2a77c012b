;; Runs the user's program like `guile FILE` with auto-compilation, but compiles it in memory
;; (nothing is written to ~/.cache): compiled code keeps the reader's source positions, so
;; errors can name main.scm:LINE:COLUMN, which Guile's interpreter (--no-auto-compile) cannot.
;; As with `guile FILE`, the whole file is read and compiled before it runs.
;;
;; An uncaught error is reported on stderr in a line-oriented form (Guile's own backtrace
;; groups frames under "In FILE:" headings, which a line regex cannot read):
;;
;;   Backtrace (most recent call last):
;;     main.scm:6:10: in top level
;;     main.scm:2:3: in divide
;;   main.scm:2:3: numerical-overflow: In procedure divide: Numerical overflow
;;
;; Lines and columns are 1-based (Guile's columns are 0-based). The last line is KIND: MESSAGE,
;; KIND being Guile's exception key, after the error's place in the user's files (the
;; innermost such frame, or where reading/expanding failed), or after "guile:" when there is
;; none. Exit status 1, as guile's.
;;
;; Everything is inside a `let`, so the user's module (guile-user) sees no names of ours.
(let* ((args (cdr (command-line)))
       (entry (car args))
       (prompt (make-prompt-tag "polyrun"))
       (running #f)   ; compiled and running: the stack holds the user's frames
       (cwd (string-append (getcwd) "/")))
  ;; Modules needed only to report an error are named with (@ MODULE NAME) where used: a
  ;; program that does not fail does not load them.

  ;; Guile's own modules record their sources relative to the load path ("ice-9/boot-9.scm");
  ;; show those absolute so that they are not taken for the user's files.
  (define (shown-file file)
    (cond ((string-prefix? cwd file) (substring file (string-length cwd)))
          ((or (string-prefix? "/" file) (file-exists? file)) file)
          ((%search-load-path file) => shown-file)
          (else file)))

  (define (user-file? file)
    (not (string-prefix? "/" file)))

  ;; (FILE LINE COLUMN NAME) with a 1-based line and column, or #f for frames without source.
  (define (frame-place frame)
    (let ((src (frame-source frame)))   ; (ip FILE LINE0 . COLUMN0)
      (and src (cadr src)
           (list (shown-file (cadr src)) (1+ (caddr src)) (1+ (cdddr src))
                 (let ((name (frame-procedure-name frame)))
                   (and name (symbol->string name)))))))

  (define (one-line s)
    (string-join (filter (lambda (w) (not (string-null? w)))
                         (map string-trim-both (string-split s #\newline)))
                 " "))

  ;; (NAME MESSAGE PLACE): Guile's exception key, the message as Guile words it, and for
  ;; errors that carry their own place (reading, macro expansion) (FILE LINE COLUMN), else #f.
  (define (describe key args)
    (define (scm-error-shaped? args)   ; (SUBR FORMAT FORMAT-ARGS REST), see scm-error
      (and (list? args) (= (length args) 4) (string? (cadr args))
           (or (not (car args)) (string? (car args)) (symbol? (car args)))
           (list? (or (caddr args) '()))))
    (cond
     ((and (eq? key '%exception) (pair? args) (exception? (car args)))
      ;; A condition object (raise of an R6RS/R7RS-style exception): named by its first type.
      (let* ((e (car args))
             (type (record-type-name (record-type-descriptor (car (simple-exceptions e)))))
             (msg (if ((@ (ice-9 exceptions) exception-with-message?) e)
                      ((@ (ice-9 exceptions) exception-message) e)
                      ""))
             (irritants (if ((@ (ice-9 exceptions) exception-with-irritants?) e)
                            ((@ (ice-9 exceptions) exception-irritants) e)
                            '())))
        (list (symbol->string type)
              (one-line (string-join (cons msg (map (lambda (x) (format #f "~s" x)) irritants))
                                     " "))
              #f)))
     ((and (eq? key 'syntax-error) (= (length args) 5))   ; (WHO MESSAGE SOURCE FORM SUBFORM)
      (let* ((who (car args))
             (source (caddr args))
             (file (and (pair? source) (assq-ref source 'filename))))
        (list "syntax-error"
              (one-line (format #f "~@[~a: ~]~a in form ~s~@[ (in subform ~s)~]"
                                who (cadr args) (cadddr args) (list-ref args 4)))
              (and file (list (shown-file file) (1+ (assq-ref source 'line))
                              (1+ (assq-ref source 'column)))))))
     ((scm-error-shaped? args)
      (let* ((msg (apply format #f (cadr args) (or (caddr args) '())))
             ;; "main.scm:2:22: unexpected \")\"": the reader puts its place in the message,
             ;; with the column just after the character it stopped at.
             (m (and (eq? key 'read-error)
                     ((@ (ice-9 regex) string-match) "^(.+):([0-9]+):([0-9]+): (.*)$" msg)))
             (group (lambda (i) ((@ (ice-9 regex) match:substring) m i))))
        (if m
            (list "read-error" (one-line (group 4))
                  (list (shown-file (group 1)) (string->number (group 2))
                        (max 1 (1- (string->number (group 3))))))
            (list (symbol->string key)
                  (one-line (if (car args) (format #f "In procedure ~a: ~a" (car args) msg) msg))
                  #f))))
     (else
      (list (format #f "~a" key)
            (one-line (call-with-output-string
                        (lambda (port) (print-exception port #f key args))))
            #f))))

  (define (report key args frames)   ; frames: a vector, innermost first
    (let* ((err (current-error-port))
           (n (vector-length frames))
           (place-at (lambda (i) (frame-place (vector-ref frames i))))
           ;; A runaway recursion has thousands of frames: show both ends, outermost first.
           (shown (filter identity
                          (map (lambda (i)
                                 (if (eq? i 'omitted)
                                     i
                                     (let ((p (place-at i)))
                                       ;; The outermost frame is the file's own top level.
                                       (if (and p (= i (1- n)) (not (cadddr p)))
                                           (list (car p) (cadr p) (caddr p) "top level")
                                           p))))
                               (if (<= n 50)
                                   (iota n (1- n) -1)
                                   (append (iota 10 (1- n) -1) '(omitted) (iota 40 39 -1))))))
           (what (describe key args))
           (place (or (caddr what)
                      (let loop ((i 0))   ; the innermost frame in the user's files
                        (and (< i n)
                             (let ((p (place-at i)))
                               (if (and p (user-file? (car p))) p (loop (1+ i)))))))))
      (unless (null? shown)
        (display "Backtrace (most recent call last):\n" err)
        (for-each
         (lambda (p)
           (if (eq? p 'omitted)
               (format err "  ... ~a frames omitted\n" (- n 50))
               (format err "  ~a:~a:~a~a\n" (car p) (cadr p) (caddr p)
                       (if (cadddr p) (string-append ": in " (cadddr p)) ""))))
         shown))
      (if place
          (format err "~a:~a:~a: ~a: ~a\n" (car place) (cadr place) (caddr place)
                  (car what) (cadr what))
          (format err "guile: ~a: ~a\n" (car what) (cadr what)))))

  (define (stack-frames stack)   ; a vector, innermost first; walked once (stack-ref is not O(1))
    (let ((v (make-vector (if stack (stack-length stack) 0))))
      (let loop ((i 0) (frame (and stack (> (vector-length v) 0) (stack-ref stack 0))))
        (when (and frame (< i (vector-length v)))
          (vector-set! v i frame)
          (loop (1+ i) (frame-previous frame))))
      v))

  (define (fail key args stack)
    (flush-all-ports)
    (catch #t
      (lambda () (report key args (stack-frames stack)))
      (lambda _   ; never leave the error unreported
        (format (current-error-port) "guile: ~a: ~s\n" key args)))
    (flush-all-ports)
    (primitive-exit 1))

  ;; (command-line) => ("main.scm" ARGS...), as if guile had run the file itself.
  (set-program-arguments args)
  ;; stdout is a pipe, hence block-buffered: keep whole lines that were written when the
  ;; program is stopped (time or memory limit).
  (setvbuf (current-output-port) 'line)
  (catch #t
    (lambda ()
      (let ((thunk ((@ (system vm loader) load-thunk-from-memory)
                    ((@ (system base compile) compile-and-load)
                     entry #:to 'bytecode #:env (current-module)
                     ;; Guile's baseline compiler: ~25 ms for a small program where the
                     ;; optimizing one (-O2, auto-compilation's default) takes ~110 ms.
                     #:optimization-level 1))))
        (set! running #t)
        (call-with-prompt prompt thunk (lambda _ #f))))
    (lambda (key . args)
      ;; Unwound: (exit N), which guile's own handler turns into the exit status, or an error
      ;; the handler below did not see (Guile skips pre-unwind handlers on a stack overflow).
      (if (eq? key 'quit)
          (apply throw key args)
          (fail key args #f)))
    (lambda (key . args)
      ;; Still at the throw. Keep the frames between our prompt (the program's top level) and
      ;; raise-exception; none when the error came from reading or compiling the file.
      (unless (eq? key 'quit)
        (fail key args (and running (make-stack #t raise-exception prompt)))))))
