<?php
// polyrun check for PHP: the check protocol (docs/languages.md) on stdout.
//
// Usage: php check.php ENTRY [SOURCE...]  (paths relative to the cwd, /work; the sources are
// every PHP file of the request, the entry among them). Nothing of the user's is executed:
// syntax and compile errors come from `php -l`, imports from the tokenizer.
//
// Imports are
//  - require/include targets that are constant expressions (strings, __DIR__, __FILE__,
//    dirname(), concatenation): available when the file exists, found the way PHP looks
//    (include_path, then the including file's folder). Computed paths are not reported.
//  - names imported by top-level `use` (class, function, const; grouped uses expanded):
//    available when PHP has them built in (a loaded extension) or one of the user's PHP files
//    declares them or their namespace. Without Composer nothing else could autoload them.

function emit(string ...$fields): void
{
    echo implode("\t", array_map(fn($f) => strtr($f, "\t\r\n", '   '), $fields)), "\n";
}

// `php -l` in a child PHP: it also catches compile errors the tokenizer does not (a redeclared
// function, `break` outside a loop). Same ini as the run: short_open_tag changes what parses.
function lint(string $file): void
{
    $cmd = [PHP_BINARY, '-d', 'display_errors=stdout', '-d', 'log_errors=0',
            '-d', 'html_errors=0', '-l', $file];
    $proc = proc_open($cmd, [0 => ['file', '/dev/null', 'r'], 1 => ['pipe', 'w'],
                             2 => ['file', '/dev/null', 'w']], $pipes);
    if ($proc === false) return;
    $out = stream_get_contents($pipes[1]);
    fclose($pipes[1]);
    proc_close($proc);
    $re = '/^(?:PHP )?(?:Parse|Fatal) error: +(.*) in (.+) on line (\d+)$/';
    foreach (explode("\n", $out) as $line) {
        if (preg_match($re, $line, $m)) {
            emit('syntax_error', $file, $m[3], '0', $m[1]);
            return;  // PHP stops at the first one
        }
    }
}

// Tokens without whitespace and comments: [id or char, text, line].
function significant(string $code): array
{
    $out = [];
    $line = 1;
    foreach (token_get_all($code) as $t) {
        if (is_array($t)) {
            $line = $t[2];
            if ($t[0] === T_WHITESPACE || $t[0] === T_COMMENT || $t[0] === T_DOC_COMMENT) continue;
            $out[] = $t;
        } else {
            $out[] = [$t, $t, $line];
        }
    }
    return $out;
}

function is_name(array $t): bool
{
    return in_array($t[0], [T_STRING, T_NAME_QUALIFIED, T_NAME_FULLY_QUALIFIED], true);
}

// Walks the token list keeping track of braces: $visit($i, $top) sees every token, $top when
// it is outside any class, function or block body (namespace blocks do not count).
function walk(array $toks, callable $visit): void
{
    $stack = [];
    $pending = null;
    foreach ($toks as $i => $t) {
        $visit($i, !array_diff($stack, ['ns']));
        $id = $t[0];
        if ($id === T_NAMESPACE) {
            $pending = 'ns';
        } elseif (in_array($id, [T_CLASS, T_INTERFACE, T_TRAIT, T_ENUM], true)) {
            if ($i === 0 || $toks[$i - 1][0] !== T_DOUBLE_COLON) $pending = 'class';
        } elseif ($id === '{' || $id === T_CURLY_OPEN || $id === T_DOLLAR_OPEN_CURLY_BRACES) {
            $stack[] = $id === '{' ? ($pending ?? 'block') : 'block';
            $pending = null;
        } elseif ($id === '}') {
            array_pop($stack);
        } elseif ($id === ';') {
            $pending = null;
        }
    }
}

// What the user's PHP files declare: lower-cased class-like and function names, constant
// names, and every namespace (with its parents) that holds something.
function declarations(array $files): array
{
    $decl = ['class' => [], 'function' => [], 'const' => [], 'ns' => []];
    foreach ($files as $file) {
        $code = @file_get_contents($file);
        if ($code === false) continue;
        $toks = significant($code);
        $ns = '';
        walk($toks, function (int $i, bool $top) use ($toks, &$ns, &$decl) {
            $id = $toks[$i][0];
            $next = $toks[$i + 1] ?? [null, '', 0];
            $prev = $toks[$i - 1][0] ?? null;
            $qualify = fn(string $n) => ltrim($ns === '' ? $n : "$ns\\$n", '\\');
            if ($id === T_NAMESPACE && ($next[0] === T_STRING || $next[0] === T_NAME_QUALIFIED)) {
                $ns = $next[1];
            } elseif ($id === T_NAMESPACE && $next[0] === '{') {
                $ns = '';
            } elseif (in_array($id, [T_CLASS, T_INTERFACE, T_TRAIT, T_ENUM], true)
                      && $next[0] === T_STRING && $prev !== T_DOUBLE_COLON && $prev !== T_NEW) {
                $decl['class'][strtolower($qualify($next[1]))] = true;
            } elseif ($id === T_FUNCTION && $top) {
                $name = $next[1] === '&' ? $toks[$i + 2] ?? null : $next;  // function &f()
                if ($name !== null && $name[0] === T_STRING) {
                    $decl['function'][strtolower($qualify($name[1]))] = true;
                }
            } elseif ($id === T_CONST && $top) {
                // `const A = 1, B = [2, 3];`: every name before an `=` at bracket depth 0.
                for ($j = $i + 1, $depth = 0; isset($toks[$j]) && $toks[$j][0] !== ';'; $j++) {
                    $c = $toks[$j][0];
                    if ($c === '(' || $c === '[') $depth++;
                    if ($c === ')' || $c === ']') $depth--;
                    if ($depth === 0 && $c === T_STRING && ($toks[$j + 1][0] ?? null) === '='
                        && in_array($toks[$j - 1][0], [T_CONST, ','], true)) {
                        $decl['const'][$qualify($toks[$j][1])] = true;
                    }
                }
            } else {
                return;
            }
            for ($n = strtolower($ns); $n !== '' && $n !== '.'; $n = strtr(dirname(strtr($n, '\\', '/')), '/', '\\')) {
                $decl['ns'][$n] = true;
            }
        });
    }
    return $decl;
}

function builtin(string $kind, string $name): bool
{
    return match ($kind) {
        'function' => function_exists($name),
        'const' => defined($name),
        default => class_exists($name, false) || interface_exists($name, false)
            || trait_exists($name, false) || enum_exists($name, false),
    };
}

// Is `$name` a namespace something built in lives in (`use Random;` then `new Random\Engine…`)?
function builtin_namespace(string $name): bool
{
    $prefix = strtolower($name) . '\\';
    $all = array_merge(get_declared_classes(), get_declared_interfaces(), get_declared_traits(),
                       get_defined_functions()['internal'], array_keys(get_defined_constants()));
    foreach ($all as $n) {
        if (str_starts_with(strtolower($n), $prefix)) return true;
    }
    return false;
}

function use_available(string $kind, string $name, array $decl): bool
{
    $lower = strtolower($name);
    if (builtin($kind, $name)) return true;
    if ($kind === 'const') return isset($decl['const'][$name]);
    if (isset($decl[$kind][$lower])) return true;
    return $kind === 'class' && (isset($decl['ns'][$lower]) || builtin_namespace($name));
}

// `use` statements starting at token $i: [kind, fully qualified name] pairs.
function use_names(array $toks, int $i): array
{
    $out = [];
    // `use function a, b;` is two functions; in `use A\{B, function c}` each item has its own.
    $kinds = [T_FUNCTION => 'function', T_CONST => 'const'];
    $stmt_kind = $kinds[$toks[$i + 1][0] ?? null] ?? 'class';
    $kind = $stmt_kind;
    $prefix = null;  // inside `A\{ … }`
    $group_kind = 'class';
    for ($i++; isset($toks[$i]) && $toks[$i][0] !== ';'; $i++) {
        $t = $toks[$i];
        if (isset($kinds[$t[0]])) {
            $kind = $kinds[$t[0]];
        } elseif (is_name($t)) {
            $name = ltrim($t[1], '\\');
            if (($toks[$i + 1][0] ?? null) === T_NS_SEPARATOR && ($toks[$i + 2][0] ?? null) === '{') {
                [$prefix, $group_kind] = [$name, $kind];
                $i += 2;
                continue;
            }
            $out[] = [$kind, $prefix === null ? $name : "$prefix\\$name"];
            if (($toks[$i + 1][0] ?? null) === T_AS) $i += 2;
        } elseif ($t[0] === ',') {
            $kind = $prefix === null ? $stmt_kind : $group_kind;
        } elseif ($t[0] === '}') {
            $prefix = null;
        }
    }
    return $out;
}

function normalize(string $path): string
{
    $parts = [];
    foreach (explode('/', $path) as $p) {
        if ($p === '' || $p === '.') continue;
        if ($p === '..') array_pop($parts); else $parts[] = $p;
    }
    return '/' . implode('/', $parts);
}

// The value of a constant include expression, or null when it needs the program to run.
function constant_path(array $toks, int &$i, string $file): ?string
{
    $value = constant_term($toks, $i, $file);
    while ($value !== null && ($toks[$i][0] ?? null) === '.') {
        $i++;
        $more = constant_term($toks, $i, $file);
        $value = $more === null ? null : $value . $more;
    }
    return $value;
}

function constant_term(array $toks, int &$i, string $file): ?string
{
    $t = $toks[$i] ?? [null, '', 0];
    $i++;
    switch (true) {
        case $t[0] === T_CONSTANT_ENCAPSED_STRING:
            $body = substr($t[1], 1, -1);
            return $t[1][0] === "'" ? strtr($body, ["\\'" => "'", '\\\\' => '\\'])
                                    : stripcslashes(strtr($body, ['\\$' => '$']));
        case $t[0] === T_DIR:
            return dirname($file);
        case $t[0] === T_FILE:
            return $file;
        case $t[0] === '(':
            $v = constant_path($toks, $i, $file);
            return ($toks[$i++][0] ?? null) === ')' ? $v : null;
        case $t[0] === T_STRING && strtolower($t[1]) === 'dirname' && ($toks[$i][0] ?? null) === '(':
            $i++;
            $v = constant_path($toks, $i, $file);
            $levels = 1;
            if (($toks[$i][0] ?? null) === ',' && ($toks[$i + 1][0] ?? null) === T_LNUMBER) {
                $levels = (int) $toks[$i + 1][1];
                $i += 2;
            }
            if ($v === null || ($toks[$i++][0] ?? null) !== ')') return null;
            return dirname($v, max(1, $levels));
    }
    return null;
}

// [name to report, available] for an include of `$path` from `$file`, PHP's search order.
function resolve_include(string $path, string $file, string $work): array
{
    if (str_starts_with($path, '/')) {
        $candidates = [$path];
    } elseif (preg_match('#^\.\.?/#', $path)) {
        $candidates = [$work . '/' . $path];
    } else {
        $candidates = [];
        foreach (explode(PATH_SEPARATOR, get_include_path()) as $dir) {
            $candidates[] = ($dir === '.' ? $work : $dir) . '/' . $path;
        }
        $candidates[] = dirname($file) . '/' . $path;
    }
    foreach ($candidates as $c) {
        if (is_file($c)) return [relative_name(normalize($c), $path, $work), true];
    }
    return [relative_name(normalize($candidates[0]), $path, $work), false];
}

function relative_name(string $abs, string $written, string $work): string
{
    return str_starts_with($abs, $work . '/') ? substr($abs, strlen($work) + 1) : $written;
}

function imports(string $file, string $work, array $decl): void
{
    $abs = normalize($work . '/' . $file);
    $code = @file_get_contents($abs);
    if ($code === false) return;
    $toks = significant($code);
    $includes = [T_REQUIRE, T_REQUIRE_ONCE, T_INCLUDE, T_INCLUDE_ONCE];
    walk($toks, function (int $i, bool $top) use ($toks, $abs, $work, $decl, $includes) {
        $t = $toks[$i];
        if (in_array($t[0], $includes, true)) {
            $j = $i + 1;
            $path = constant_path($toks, $j, $abs);
            $end = $toks[$j][0] ?? ';';
            if ($path === null || !in_array($end, [';', ')', ',', T_CLOSE_TAG], true)) return;
            [$name, $ok] = resolve_include($path, $abs, $work);
            emit('import', $name, (string) $t[2], $ok ? '1' : '0');
            return;
        }
        // An import, not a trait use (class body) or a closure's `use (…)`.
        $prev = $toks[$i - 1][0] ?? T_OPEN_TAG;
        if ($t[0] === T_USE && $top && in_array($prev, [T_OPEN_TAG, ';', '{', '}'], true)) {
            foreach (use_names($toks, $i) as [$kind, $name]) {
                emit('import', $name, (string) $t[2], use_available($kind, $name, $decl) ? '1' : '0');
            }
        }
    });
}

$args = array_slice($argv, 1);
if (!$args) exit(0);
$work = getcwd();
$entry = $args[0];
lint($entry);
$decl = declarations(array_map(fn($f) => "$work/$f", array_unique($args)));
imports($entry, $work, $decl);
