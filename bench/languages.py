#!/usr/bin/env python3
"""Cold hello-world latency of every language: through `polyrun run` beside the bare toolchain.

For each languages/<id>/tests/hello.toml, hyperfine times (in one run, same machine state):
  bare      the manifest's own compile and run commands executed directly on the host, in a
            fresh directory per run (a small sh script; /work and /tmp mapped into it);
  polyrun   `polyrun run` with the compiled-artifact cache off (compiles every time);
  cached    `polyrun run` with the cache on (compiled languages only: the compile is a hit).
Prints a Markdown table of medians and writes bench/results/languages.json.
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
        tok = tok.replace("{entry}", entry).replace("{lang_dir}", lang_dir)
        out.append(tok.replace("/tmp/", work + "/.tmp/").replace("/work/", work + "/"))
    return out


def bare_script(manifest, lang_dir, entry, files, work):
    """An sh script doing what the sandbox does, minus the sandbox."""
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
            stage_env[k] = (v.replace("{lang_dir}", lang_dir).replace("/tmp/", w + "/.tmp/")
                            .replace("/work", w))
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
            with open(script, "w") as f:
                f.write(bare_script(manifest, os.path.join(LANGS, lang), entry, files, work))
            src = [os.path.join(work, "src", entry)] + [
                os.path.join(work, "src", n) for n in files if n != entry]
            poly = [POLYRUN, "run", "-l", lang] + src
            cmds = ["-n", "bare", f"/bin/sh {script}",
                    "-n", "polyrun", shlex.join([POLYRUN, "--config", nocache] + poly[1:])]
            if "compile" in manifest:
                cmds += ["-n", "cached", shlex.join(poly)]
            export = os.path.join(OUT, f"lang_{lang}.json")
            subprocess.run(["hyperfine", "-N", "--warmup", "2", "--runs", str(RUNS), "--style",
                            "none", "--export-json", export] + cmds, check=True,
                           stdout=subprocess.DEVNULL)
            with open(export) as f:
                data = json.load(f)
            results[lang] = {r["command"]: r["median"] * 1000 for r in data["results"]}
    with open(os.path.join(OUT, "languages.json"), "w") as f:
        json.dump(results, f, indent=1)
    print("| language | bare (ms) | polyrun, compiling (ms) | overhead | polyrun, cached compile (ms) |")
    print("|---|---|---|---|---|")
    for lang, r in results.items():
        cached = f"{r['cached']:.1f}" if "cached" in r else "—"
        print(f"| {lang} | {r['bare']:.1f} | {r['polyrun']:.1f} | {r['polyrun'] - r['bare']:+.1f} | {cached} |")


if __name__ == "__main__":
    main()
