"""The floor of any fork-per-run design on this machine, for warm_bench's throughput table.

A Python parent that holds what polyrun's zygote holds before its first run (the modules
languages/python/zygote.py pre-imports, its objects frozen out of the collector's sight) forks
one child per run, `--concurrency` at a time, for `--seconds`. Each child runs the code as a
`__main__` script with its stdout on a pipe of its own, flushes and exits; the parent reads the
pipe to its end and reaps the child. No isolation at all: no namespaces, no cgroup, no seccomp,
no privilege drop. What a sandboxed run costs beyond this is isolation and supervision.

Prints one JSON object: {"runs": n, "seconds": elapsed, "samples_ms": [latency of each run]}.
Exits 1, naming the run, when a child's output or exit status is not the expected one.
"""

import argparse
import gc
import json
import os
import select
import sys
import time

# As languages/python/zygote.py pre-imports them.
import collections, dataclasses, datetime, decimal, functools, itertools, math  # noqa: E401,F401
import re, string, textwrap, typing  # noqa: E401,F401


def _child(code, out_w):
    status = 1
    try:
        os.dup2(out_w, 1)
        exec(compile(code, "main.py", "exec"), {"__name__": "__main__"})
        sys.stdout.flush()
        status = 0
    finally:
        os._exit(status)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--code", required=True)
    parser.add_argument("--expect", required=True, help="each run's whole stdout")
    args = parser.parse_args()
    expect = args.expect.encode()
    gc.freeze()
    poller = select.poll()
    running = {}  # the pipe's read end -> [pid, start, output so far]
    samples = []
    start = time.perf_counter()
    end = start + args.seconds
    while running or time.perf_counter() < end:
        while len(running) < args.concurrency and time.perf_counter() < end:
            out_r, out_w = os.pipe()
            began = time.perf_counter()
            pid = os.fork()
            if pid == 0:
                os.close(out_r)
                _child(args.code, out_w)
            os.close(out_w)
            running[out_r] = [pid, began, b""]
            poller.register(out_r, select.POLLIN)
        for fd, _ in poller.poll():
            data = os.read(fd, 65536)
            if data:
                running[fd][2] += data
                continue
            poller.unregister(fd)
            os.close(fd)
            pid, began, output = running.pop(fd)
            _, status = os.waitpid(pid, 0)
            if status != 0 or output != expect:
                sys.exit(f"fork_floor: run {len(samples) + 1}: status {status}, output {output!r}")
            samples.append((time.perf_counter() - began) * 1000)
    json.dump({"runs": len(samples), "seconds": time.perf_counter() - start,
               "samples_ms": samples}, sys.stdout)


if __name__ == "__main__":
    main()
