;; polyrun check for Scheme: the check protocol (docs/languages.md) on stdout.
;;
;; Usage: guile check.scm FILE (relative to the cwd, /work). Reads every form with Guile's own
;; reader, which is Scheme's parser: a read error (unbalanced parentheses, a bad # syntax, an
;; unterminated string) is the syntax error. Nothing is expanded or evaluated, since expanding
;; would run the user's macros. Imports are the module names of use-modules, define-module's
;; #:use-module/#:autoload, R6RS/R7RS import (also inside library/define-library) and (@ M x),
;; named as written, e.g. "(srfi :1)"; and the files of load, include and include-ci.
;;
;; A module is available when it is already loaded or its source or compiled file is on the
;; load path (Guile's, plus /work as -L /work gives the run), found without loading it.
(use-modules (ice-9 match)
             (ice-9 regex)
             (srfi srfi-1))

(define (emit . fields)
  (display (string-join (map (lambda (f)
                               (string-map (lambda (c) (if (memv c '(#\tab #\newline #\return)) #\space c))
                                           (if (string? f) f (object->string f))))
                             fields)
                        "\t"))
  (newline))

(define (line-of x fallback)   ; 1-based line of a datum the reader placed, else fallback's
  (let ((line (and (pair? x) (assq-ref (source-properties x) 'line))))
    (if line (1+ line) fallback)))

;;; Module names

(define (module-name? x)
  (and (pair? x) (list? x) (every symbol? x)))

;; (srfi :1 lists) and (srfi 1) are Guile's (srfi srfi-1 lists), as in its R6RS import.
(define (guile-module-name name)
  (match name
    (('srfi n rest ...)
     (let ((num (cond ((and (integer? n) (exact? n)) n)
                      ((and (symbol? n) (string-prefix? ":" (symbol->string n)))
                       (string->number (substring (symbol->string n) 1)))
                      (else #f))))
       (if num
           (cons* 'srfi (string->symbol (string-append "srfi-" (number->string num))) rest)
           name)))
    (_ name)))

(define (module-available? name)
  (let* ((name (guile-module-name name))
         (path (string-join (map symbol->string name) "/")))
    (and (every symbol? name)
         (or (resolve-module name #f #f #:ensure #f)   ; loaded already: (guile), (ice-9 boot-9)…
             (%search-load-path path)
             (search-path %load-compiled-path path %load-compiled-extensions))
         #t)))

;; An R6RS/R7RS import set -> the library name inside it, without a version.
(define (import-set-name spec)
  (match spec
    (((or 'only 'except 'prefix 'rename 'for) (? pair? inner) . _) (import-set-name inner))
    (('library (? pair? name)) (import-set-name name))
    ((? pair?)
     (let ((name (if (and (pair? (last-pair spec)) (pair? (last spec)))   ; (rnrs base (6))
                     (drop-right spec 1)
                     spec)))
       (and (pair? name) (list? name)
            (every (lambda (x) (or (symbol? x) (and (integer? x) (exact? x)))) name)
            name)))
    (_ #f)))

;;; The walk

(define imports '())   ; (NAME LINE AVAILABLE), newest first

(define (add! name line available)
  (let ((key (if (string? name) name (object->string name))))
    (unless (assoc key imports)
      (set! imports (cons (list key line (if available 1 0)) imports)))))

(define (add-module! spec name line)
  (when name (add! name (line-of spec line) (module-available? name))))

(define (walk form file line)
  (when (pair? form)
    (let ((line (line-of form line)))
      (match form
        (((or 'quote 'quasiquote 'syntax 'quasisyntax) . _) #f)   ; data, not code
        (('use-modules specs ...)
         (for-each (lambda (spec)
                     ;; (ice-9 match) or ((ice-9 match) #:select (match))
                     (let ((name (if (and (pair? spec) (pair? (car spec))) (car spec) spec)))
                       (add-module! spec (and (module-name? name) name) line)))
                   specs))
        (('define-module name options ...)
         (let loop ((options options))
           (match options
             (((or #:use-module #:autoload) spec . rest)
              (let ((name (if (and (pair? spec) (pair? (car spec))) (car spec) spec)))
                (add-module! spec (and (module-name? name) name) line))
              (loop rest))
             ((_ . rest) (loop rest))
             (_ #f))))
        (('import specs ...)
         (for-each (lambda (spec) (add-module! spec (import-set-name spec) line)) specs))
        (((or '@ '@@) (? module-name? name) . _)
         (add-module! form name line))
        (((or 'load 'include 'include-ci) (? string? target) . _)
         ;; Relative to the file that names it, as Guile resolves both.
         (let ((path (if (absolute-file-name? target)
                         target
                         (in-vicinity (dirname file) target))))
           (add! target line (and (file-exists? path) (not (file-is-directory? path))))))
        (('load-from-path (? string? target) . _)
         (add! target line (%search-load-path target)))
        (_ #f))
      ;; Nested forms: library bodies, begin, cond-expand clauses, procedure bodies.
      (unless (memq (car form) '(quote quasiquote syntax quasisyntax))
        (let loop ((x form))
          (when (pair? x)
            (walk (car x) file line)
            (loop (cdr x))))))))

;;; Reading

(define (check file)
  (catch #t
    (lambda ()
      (call-with-input-file file
        (lambda (port)
          (set-port-encoding! port (or (file-encoding port) "UTF-8"))
          (let loop ()
            (let ((form (read port)))
              (unless (eof-object? form)
                (walk form file 1)
                (loop)))))))
    (lambda (key . args)
      (let* ((msg (if (and (= (length args) 4) (string? (cadr args)))
                      (apply format #f (cadr args) (or (caddr args) '()))
                      (object->string (cons key args))))
             (m (string-match "^(.*):([0-9]+):([0-9]+): (.*)$" msg)))
        (if (and (eq? key 'read-error) m)
            ;; The reader gives the column just after the character it stopped at.
            (emit "syntax_error" file (match:substring m 2)
                  (max 1 (1- (string->number (match:substring m 3))))
                  (match:substring m 4))
            (emit "syntax_error" file 1 0 msg)))))
  (for-each (lambda (i) (apply emit "import" i)) (reverse imports)))

(add-to-load-path (getcwd))
(let ((args (cdr (command-line))))
  (unless (null? args)
    (check (car args))))
