"""The benchmark's table and figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def format_table(results: dict[str, Any]) -> str:
    lines: list[str] = []
    if results["engine"]:  # --skip-engine: no table rather than an empty one
        lines += [
            "Engine (in process, no HTTP)",
            f"{'model':<10} {'runtime':<12} {'batch':>5} {'p50 ms':>8} {'images/s':>10}",
        ]
        for row in results["engine"]:
            lines.append(
                f"{row['model']:<10} {row['runtime']:<12} {row['batch_size']:>5} "
                f"{row['latency_ms_p50']:>8.2f} {row['images_per_second']:>10.1f}"
            )
        lines.append("")
    workers = results.get("service", {}).get("workers")
    served_by = (
        f"{workers} server process{'es' if workers != 1 else ''}" if workers else "given service"
    )
    lines += [
        f"HTTP ({served_by}; "
        f"{results['generator']}; ceiling {results['ceiling_rps']:.0f} req/s "
        "against GET /health/live)",
        f"{'model':<10} {'runtime':<17} {'conc':>5} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'p99 ms':>8} {'non-200':>8} {'errors':>7} {'of engine':>9}",
    ]
    for row in results["http"]:
        lines.append(
            f"{row['target']:<10} {row.get('runtime') or '(service)':<17} {row['concurrency']:>5} "
            f"{row['requests_per_second']:>8.1f} {row['p50_ms']:>8.2f} "
            f"{row['p95_ms']:>8.2f} {row['p99_ms']:>8.2f} {row['non_200']:>8} "
            f"{row['errors']:>7} {_share(row.get('share_of_engine')):>9}"
        )
    if results.get("keras_predict_ms"):
        lines += ["", "model.predict() per request (the naive baseline), batch 1:"]
        for name, ms in results["keras_predict_ms"].items():
            lines.append(f"  {name:<10} {ms:7.1f} ms  -> at most {1000 / ms:6.1f} req/s")
    return "\n".join(lines)


def _share(share: float | None) -> str:
    """Served rate as a share of the engine's best; "-" when the engine was not measured."""
    return "-" if share is None else f"{share:.0%}"


def draw_figure(results: dict[str, Any], path: Path) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"regular": "tab:blue", "separable": "tab:orange"}
    figure, (throughput, latency) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    # One line per model and runtime served; the runtime's marker tells them apart.
    markers = ["o", "s", "^", "D", "v", "P"]
    runtimes = sorted({row.get("runtime") or "" for row in results["http"]})
    served = sorted({(row["target"], row.get("runtime") or "") for row in results["http"]})
    for name, runtime in served:
        rows = sorted(
            (
                r
                for r in results["http"]
                if r["target"] == name and (r.get("runtime") or "") == runtime
            ),
            key=lambda r: r["concurrency"],
        )
        levels = [r["concurrency"] for r in rows]
        label = f"{name} ({runtime})" if runtime else name
        marker = markers[runtimes.index(runtime) % len(markers)]
        throughput.plot(
            levels,
            [r["requests_per_second"] for r in rows],
            "-" + marker,
            color=colours.get(name),
            label=f"{label} served",
        )
        best = results["engine_best"].get(name)
        if best and runtime == runtimes[0]:
            throughput.axhline(
                best, color=colours.get(name), linestyle=":", label=f"{name} engine best"
            )
        for style, key in (("-", "p50_ms"), ("--", "p95_ms"), (":", "p99_ms")):
            latency.plot(
                levels,
                [r[key] for r in rows],
                style,
                marker=marker,
                markersize=3,
                color=colours.get(name),
                label=f"{label} {key[:3]}",
            )
    # Concurrency levels as plain numbers (1, 8, 32), not 2^0..2^6; latency as 10, 100 ms.
    plain = matplotlib.ticker.FuncFormatter(lambda value, _position: f"{value:g}")
    levels = sorted({r["concurrency"] for r in results["http"]})
    for axes in (throughput, latency):
        axes.set_xscale("log", base=2)
        axes.set_xticks(levels)
        axes.xaxis.set_major_formatter(plain)
        axes.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    latency.set_yscale("log")
    # 1-2-5 steps: a span inside one decade (2 to 4 ms) still gets labelled ticks.
    latency.yaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    latency.yaxis.set_major_formatter(plain)
    latency.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    throughput.set_xlabel("concurrent clients")
    throughput.set_ylabel("requests (images) per second")
    throughput.set_title("Throughput of POST /predict?model=NAME")
    throughput.legend(fontsize=8)
    throughput.grid(alpha=0.3)
    latency.set_xlabel("concurrent clients")
    latency.set_ylabel("latency (ms)")
    latency.set_title("Latency percentiles")
    latency.legend(fontsize=7, ncol=2)
    latency.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
