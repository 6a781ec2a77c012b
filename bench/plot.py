#!/usr/bin/python3
"""Plots the latency distributions the suite measured (docs/performance.md).

Reads what exists of bench/results/{warm,server,server_warm}.json and writes
bench/results/latency.svg and latency.png: one panel per language of warm.json (bare, cold and
warm runs as empirical CDFs), one for the server's paths cold and warm, and the throughput of
isolated Python runs against concurrency.

Usage: bench/plot.py [RESULTS_DIR]
"""

import json
import pathlib
import sys

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)


def load(path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def ecdf(ax, samples, label):
    xs = sorted(samples)
    ys = [(i + 1) / len(xs) for i in range(len(xs))]
    ax.step(xs, ys, where="post", label=f"{label} (median {xs[(len(xs) - 1) // 2]:.2f} ms)")


def main():
    results = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results")
    warm = load(results / "warm.json") or {}
    servers = {
        k: load(results / f"{k}.json")
        for k in ("server", "server_prebuilt", "server_warm", "server_zygote")
    }
    servers = {k: v for k, v in servers.items() if v and "samples_ms" in v["library_ms"]}
    languages = [k for k, v in warm.items() if isinstance(v, dict) and "code" in v]
    panels = [("lang", lang) for lang in languages]
    if servers:
        panels.append(("server", None))
    if "throughput_python" in warm:
        panels.append(("throughput", None))
    if not panels:
        sys.exit(f"plot: no results in {results}: run `make bench` first")

    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    for ax, (kind, lang) in zip(axes[0], panels):
        if kind == "lang":
            for path in ("bare", "cold", "prebuilt", "warm", "zygote"):
                if path in warm[lang]:
                    ecdf(ax, warm[lang][path]["samples_ms"], path)
            ax.set_title(f"{lang}: {warm[lang]['code']}")
        elif kind == "server":
            for name, data in servers.items():
                for key, label in (("library_ms", "library"), ("http_ms", "HTTP")):
                    ecdf(ax, data[key]["samples_ms"], f"{label}, {data.get('start', name)}")
            ax.set_title("python print(1): library vs POST /v1/executions")
        if kind in ("lang", "server"):
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_xlabel("latency (ms, log scale)")
            ax.set_ylabel("fraction of runs")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8, loc="lower right")
        else:
            for path, by_conc in warm["throughput_python"].items():
                conc = sorted(by_conc, key=int)
                ax.plot([int(c) for c in conc], [by_conc[c]["runs_per_second"] for c in conc],
                        marker="o", label="fork (no isolation)" if path == "fork" else path)
            ax.set_xscale("log", base=2)
            ax.set_xticks([1, 2, 4, 8], ["1", "2", "4", "8"])
            # The fork floor runs an order of magnitude above the isolated paths.
            ax.set_yscale("log")
            ax.set_xlabel("concurrent callers")
            ax.set_ylabel("python print(1) runs/s")
            ax.set_title("throughput (sustained)")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    for ext in ("svg", "png"):
        out = results / f"latency.{ext}"
        fig.savefig(out, dpi=110)
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
