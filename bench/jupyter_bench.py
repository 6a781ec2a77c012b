#!/usr/bin/python3
"""Round trip of `1+1` through a Jupyter kernel: polyrun's sandboxed kernel vs ipykernel.

Each kernel is started once with jupyter_client; then every sample is one execute request
followed by waiting for the kernel's `idle` status on iopub (BlockingKernelClient), timed on
the client. Prints the medians and their ratio; no asserts.

  JUPYTER_PATH=<prefix>/share/jupyter bench/jupyter_bench.py [--n 200] [--kernel polyrun-python]

where <prefix> holds `polyrun kernel install --prefix <prefix> python`. The ipykernel side is
Debian's python3-ipykernel (kernel name python3).
"""

import argparse
import statistics
import time

from jupyter_client.manager import start_new_kernel


def round_trips(kernel_name, n, warmup=10):
    km, kc = start_new_kernel(kernel_name=kernel_name, startup_timeout=60)
    try:
        samples = []
        for i in range(warmup + n):
            start = time.perf_counter()
            msg_id = kc.execute("1+1")
            while True:
                msg = kc.get_iopub_msg(timeout=30)
                if (
                    msg["parent_header"].get("msg_id") == msg_id
                    and msg["msg_type"] == "status"
                    and msg["content"]["execution_state"] == "idle"
                ):
                    break
            elapsed = time.perf_counter() - start
            kc.get_shell_msg(timeout=30)  # the execute_reply, outside the timing
            if i >= warmup:
                samples.append(elapsed)
        return samples
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--kernel", default="polyrun-python")
    parser.add_argument("--baseline", default="python3")
    args = parser.parse_args()
    results = {}
    for name in (args.kernel, args.baseline):
        s = round_trips(name, args.n)
        results[name] = statistics.median(s)
        q = statistics.quantiles(s, n=20)
        print(f"{name:>16}: median {results[name] * 1e3:7.3f} ms  p5 {q[0] * 1e3:7.3f} ms  "
              f"p95 {q[-1] * 1e3:7.3f} ms  (n={len(s)})")
    print(f"ratio {args.kernel} / {args.baseline}: "
          f"{results[args.kernel] / results[args.baseline]:.2f}x")


if __name__ == "__main__":
    main()
