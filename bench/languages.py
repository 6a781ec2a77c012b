#!/usr/bin/env python3
"""Cold hello-world latency of every language: through `polyrun run` beside the bare toolchain.

For each languages/<id>/tests/hello.toml, hyperfine times (in one run, same machine state):
  bare      the manifest's own compile and run commands executed directly on the host, in a
            fresh directory per run (a small sh script; /work and /tmp mapped into it);
  polyrun   `polyrun run` with the compiled-artifact cache off (compiles every time);
  cached    `polyrun run` with the cache on (compiled languages only: the compile is a hit).
The bare figure is the script's median minus that of its setup lines alone (sh, rm, mkdir,
cp). Prints a Markdown table of medians and writes bench/results/languages.json.
Usage: bench/languages.py [POLYRUN_BINARY] [RUNS] [LANGUAGE...]
"""
import json
import os
import shlex
import subprocess
import sys
import tempfile
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POLYRUN = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build-release/polyrun")
RUNS = int(sys.argv[2]) if len(sys.argv) > 2 else 10
ONLY = set(sys.argv[3:])
LANGS = os.path.join(ROOT, "languages")
OUT = os.path.join(ROOT, "bench", "results")


def files_of(case, manifest):
    if "code" in case:
        entry = manifest.get("entry") or "main." + manifest["extensions"][0]
        return entry, {entry: case["code"]}
    return case["entry"], {f["name"]: f["content"] for f in case["files"]}


def expand(cmd, entry, sources, lang_dir, work):
    out = []
    for tok in cmd:
        if tok == "{args}":
            continue
        if tok == "{sources}":
            out += sources
            continue
        # Sandbox paths first: the language folder itself may live under /work or /tmp.
        tok = tok.replace("/tmp/", work + "/.tmp/").replace("/work/", work + "/")
        out.append(tok.replace("{entry}", entry).replace("{lang_dir}", lang_dir)
                   .replace("{memory_mb}", "512"))
    return out


def bare_lang_dir(lang_dir, work):
    """The language folder as the bare run sees it: recipe files with the sandbox's /work and
    /tmp rewritten to the run directory, subfolders (node_modules, lib) linked."""
    out = os.path.join(work, "lang")
    os.makedirs(out, exist_ok=True)
    w = f"{work}/run"
    for name in os.listdir(lang_dir):
        src = os.path.join(lang_dir, name)
        dst = os.path.join(out, name)
        if os.path.isdir(src):
            if not os.path.exists(dst):
                os.symlink(src, dst)
            continue
        with open(src, "rb") as f:
            data = f.read()
        try:
            text = data.decode()
            data = (text.replace("/tmp/", w + "/.tmp/").replace("/work/", w + "/")
                    .replace("/tmp ", w + "/.tmp ")).encode()
        except UnicodeDecodeError:
            pass
        with open(dst, "wb") as f:
            f.write(data)
        os.chmod(dst, os.stat(src).st_mode)
    return out


def bare_script(manifest, lang_dir, entry, files, work):
    """An sh script doing what the sandbox does, minus the sandbox."""
    lang_dir = bare_lang_dir(lang_dir, work)
    lines = ["set -e", f"rm -rf {work}/run && mkdir -p {work}/run/.tmp && cd {work}/run"]
    for name in files:
        lines.append(f"cp {shlex.quote(os.path.join(work, 'src', name))} {shlex.quote(name)}")
    w = f"{work}/run"
    env = {"HOME": w, "TMPDIR": w + "/.tmp", "LANG": "C.UTF-8", "PATH": "/usr/local/bin:/usr/bin:/bin"}
    for stage in ("compile", "run"):
        recipe = manifest.get(stage)
        if not recipe:
            continue
        exts = recipe.get("sources", manifest["extensions"])
        sources = [entry] + [n for n in files if n != entry and n.rsplit(".", 1)[-1] in exts]
        stage_env = dict(env)
        for k, v in recipe.get("env", {}).items():
            stage_env[k] = (v.replace("/tmp/", w + "/.tmp/").replace("/work", w)
                            .replace("{lang_dir}", lang_dir).replace("{memory_mb}", "512"))
        cmd = expand(recipe["command"], entry, sources, lang_dir, w)
        envs = " ".join(f"{k}={shlex.quote(v)}" for k, v in stage_env.items())
        lines.append(f"env -i {envs} {' '.join(shlex.quote(c) for c in cmd)}"
                     + (" >/dev/null" if stage == "compile" else ""))
    return "\n".join(lines) + "\n"


def main():
    os.makedirs(OUT, exist_ok=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        nocache = os.path.join(tmp, "nocache.toml")
        with open(nocache, "w") as f:
            f.write("artifact_cache_size = 0\n")
        for lang in sorted(os.listdir(LANGS)):
            hello = os.path.join(LANGS, lang, "tests", "hello.toml")
            if not os.path.exists(hello) or (ONLY and lang not in ONLY):
                continue
            with open(os.path.join(LANGS, lang, "manifest.toml"), "rb") as f:
                manifest = tomllib.load(f)
            with open(hello, "rb") as f:
                case = tomllib.load(f)
            entry, files = files_of(case, manifest)
            work = os.path.join(tmp, lang)
            for name, content in files.items():
                path = os.path.join(work, "src", name)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w") as f:
                    f.write(content)
            script = os.path.join(work, "bare.sh")
            body = bare_script(manifest, os.path.join(LANGS, lang), entry, files, work)
            with open(script, "w") as f:
                f.write(body)
            # The fresh-directory setup alone (sh, rm, mkdir, cp): subtracted from bare.
            setup = os.path.join(work, "setup.sh")
            with open(setup, "w") as f:
                f.write("\n".join(l for l in body.splitlines() if not l.startswith("env -i")))
            src = [os.path.join(work, "src", entry)] + [
                os.path.join(work, "src", n) for n in files if n != entry]
            poly = [POLYRUN, "run", "-l", lang] + src
            cmds = ["-n", "setup", f"/bin/sh {setup}", "-n", "bare", f"/bin/sh {script}",
                    "-n", "polyrun", shlex.join([POLYRUN, "--config", nocache] + poly[1:])]
            if "compile" in manifest:
                cmds += ["-n", "cached", shlex.join(poly)]
            export = os.path.join(OUT, f"lang_{lang}.json")
            done = subprocess.run(["hyperfine", "-N", "--warmup", "2", "--runs", str(RUNS),
                                   "--style", "none", "--export-json", export] + cmds,
                                  stdout=subprocess.DEVNULL)
            if done.returncode != 0:
                print(f"{lang}: a command failed; see `sh {script}`", file=sys.stderr)
                continue
            with open(export) as f:
                data = json.load(f)
            r = {c["command"]: c["median"] * 1000 for c in data["results"]}
            r["bare"] -= r.pop("setup")
            results[lang] = r
    with open(os.path.join(OUT, "languages.json"), "w") as f:
        json.dump(results, f, indent=1)
    print("| language | bare (ms) | polyrun, compiling (ms) | overhead | polyrun, cached compile (ms) |")
    print("|---|---|---|---|---|")
    for lang, r in results.items():
        cached = f"{r['cached']:.1f}" if "cached" in r else "—"
        print(f"| {lang} | {r['bare']:.1f} | {r['polyrun']:.1f} | {r['polyrun'] - r['bare']:+.1f} | {cached} |")


if __name__ == "__main__":
    main()
