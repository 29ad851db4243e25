"""``sepconv-bench --sweep-workers``: the best served configuration on this machine, and where
the default (``SEPCONV_WORKERS=auto``) stands against it.

sepconv-bench --sweep-workers                          # workers 1..CPUs, thread splits, c=1,32
sepconv-bench --sweep-workers --concurrency 32 --duration 8 --rounds 3

Each configuration is a fresh ``sepconv-serve`` (``SEPCONV_WORKERS`` and
``SEPCONV_INTRA_OP_THREADS``), loaded with raw-body ``POST /predict?model=NAME`` for each model
and concurrency; the default runs as one more configuration with both settings at their
defaults. This machine's speed drifts from minute to minute, so every configuration is measured
once per round, the rounds in alternating order, and each keeps its best round.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT = "default"


@dataclass(frozen=True)
class Configuration:
    """Worker processes and intra-op threads per worker; ``None`` for both is the default."""

    workers: int | None
    threads: int | None

    @property
    def label(self) -> str:
        return DEFAULT if self.workers is None else f"{self.workers}x{self.threads}"

    def service_env(self) -> dict[str, str]:
        if self.workers is None:
            # The settings' own defaults, spelled out so that the caller's environment cannot
            # change them.
            return {"SEPCONV_WORKERS": "auto", "SEPCONV_INTRA_OP_THREADS": "0"}
        return {"SEPCONV_WORKERS": str(self.workers), "SEPCONV_INTRA_OP_THREADS": str(self.threads)}


@dataclass
class Measured:
    """One configuration's best round: requests/s per (model, concurrency), and what it ran."""

    configuration: Configuration
    requests_per_second: dict[str, float] = field(default_factory=dict)
    p99_ms: dict[str, float] = field(default_factory=dict)
    runs: dict[str, list[float]] = field(default_factory=dict)
    workers: int | None = None
    threads: int | None = None
    resident_mib_per_worker: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The row of the JSON report: what was asked (label), what ran, what it served."""
        return {
            "label": self.configuration.label,
            "workers": self.workers,
            "threads": self.threads,
            "requests_per_second": self.requests_per_second,
            "p99_ms": self.p99_ms,
            "runs": self.runs,
            "resident_mib_per_worker": self.resident_mib_per_worker,
        }


def sweep_configurations(
    cpus: int, workers: Sequence[int] | None = None, threads: Sequence[int] | None = None
) -> list[Configuration]:
    """The default first, then every worker count with each thread split worth trying: one
    thread, the fair share (CPUs / workers) and every CPU (oversubscribed)."""
    counts = workers or sorted({*(2**k for k in range(8) if 2**k <= cpus), cpus})
    configurations = [Configuration(None, None)]
    for count in counts:
        splits = threads or sorted({1, max(1, cpus // count), cpus})
        configurations += [Configuration(count, split) for split in splits]
    return configurations


def key(model: str, concurrency: int) -> str:
    return f"{model}@{concurrency}"


def summarise(measured: list[Measured], models: list[str], levels: list[int]) -> dict[str, Any]:
    """Per model and concurrency: the best configuration and the default's share of it, both
    as the default's own runs and as its configuration (the default's runs pooled with those
    of the explicit configuration it resolved to: two runs of one configuration differ only by
    the machine's drift)."""
    default = next(m for m in measured if m.configuration.workers is None)
    same = [
        m
        for m in measured
        if m is default
        or (
            default.workers is not None
            and (m.workers, m.threads) == (default.workers, default.threads)
        )
    ]
    summary: dict[str, Any] = {}
    for model in models:
        for concurrency in levels:
            point = key(model, concurrency)
            best = max(measured, key=lambda m: m.requests_per_second.get(point, 0.0))
            best_rate = best.requests_per_second.get(point, 0.0)
            default_rate = default.requests_per_second.get(point, 0.0)
            pooled = max(m.requests_per_second.get(point, 0.0) for m in same)
            summary[point] = {
                "best": best.configuration.label,
                "best_requests_per_second": best_rate,
                "default_requests_per_second": default_rate,
                "default_share_of_best": _share(default_rate, best_rate),
                "default_configuration": f"{default.workers}x{default.threads}",
                "default_configuration_share_of_best": _share(pooled, best_rate),
            }
    return summary


def _share(rate: float, best: float) -> float:
    return round(rate / best, 3) if best else 0.0


def format_sweep(results: dict[str, Any]) -> str:
    models, levels = results["models"], results["concurrency"]
    points = [key(m, c) for m in models for c in levels]
    header = f"{'workers x threads':<18}" + "".join(f"{p:>16}" for p in points)
    lines = [
        f"Served requests/s ({results['runtime']}, {results['generator']}, best of "
        f"{results['rounds']} round(s) of {results['duration_s']:g} s; {results['cpus']} CPUs)",
        header + f"{'MiB/worker':>12}",
    ]
    for row in results["configurations"]:
        label = row["label"]
        if label == DEFAULT:
            label = f"default ({row['workers']}x{row['threads']})"
        rates = "".join(f"{row['requests_per_second'].get(p, 0.0):>16.1f}" for p in points)
        resident = row["resident_mib_per_worker"]
        memory = f"{max(resident):.0f}" if resident else "-"
        lines.append(f"{label:<18}{rates}{memory:>12}")
    lines.append("")
    for point, best in results["summary"].items():
        lines.append(
            f"{point:<16} best {best['best']:<8} {best['best_requests_per_second']:>9.1f} req/s;"
            f" default {best['default_requests_per_second']:>9.1f} "
            f"({best['default_share_of_best']:.0%} of the best; its configuration, "
            f"{best['default_configuration']}, {best['default_configuration_share_of_best']:.0%})"
        )
    return "\n".join(lines)


def resident_mib(pid: int) -> float:
    """Peak resident memory (VmHWM) of ``pid`` in MiB; 0 when it cannot be read."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    found = re.search(r"^VmHWM:\s+(\d+) kB$", text, re.M)
    return int(found.group(1)) / 1024 if found else 0.0


def _measure_round(
    row: Measured, url: str, pid: int, args: argparse.Namespace, body: Path, generator: str
) -> str:
    """Load the running service with each model at each concurrency, keeping ``row``'s best;
    returns the load generator used, so that every later run uses the same one."""
    import httpx

    from sepconv_bench.http_load import run_load
    from sepconv_bench.server import serving_gauges, worker_pids

    row.workers, row.threads = serving_gauges(httpx.get(f"{url}/metrics", timeout=10).text)
    for model in [name for name in args.models.split(",") if name]:
        for concurrency in args.concurrency:
            target = f"{url}/predict?model={model}&top_k=1"
            load = run_load(target, model, concurrency, args.duration, body, generator)
            generator = load.generator
            point = key(model, concurrency)
            row.runs.setdefault(point, []).append(load.requests_per_second)
            print(
                f"  {point:<16} {load.requests_per_second:9.1f} req/s  p99 {load.p99_ms:7.2f} ms"
                f"  non-200 {load.non_200}  errors {load.errors}",
                flush=True,
            )
            if load.requests_per_second > row.requests_per_second.get(point, 0.0):
                row.requests_per_second[point] = load.requests_per_second
                row.p99_ms[point] = load.p99_ms
    row.resident_mib_per_worker = [round(resident_mib(p), 1) for p in worker_pids(pid)]
    return generator


def _ints(text: str) -> list[int]:
    return [int(item) for item in text.split(",") if item]


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="sepconv-bench --sweep-workers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model-dir", type=Path, default=None, help="default: models/")
    parser.add_argument("--models", default="regular,separable")
    parser.add_argument("--runtime", default="tensorflow", help="SEPCONV_RUNTIME of every run")
    parser.add_argument("--concurrency", type=_ints, default=[1, 32])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per load run")
    parser.add_argument("--rounds", type=int, default=1, help="measurements of each setting")
    parser.add_argument(
        "--workers", type=_ints, default=None, help="worker counts (default: 1, 2, 4 ... CPUs)"
    )
    parser.add_argument(
        "--threads",
        type=_ints,
        default=None,
        help="intra-op threads per worker (default: 1, CPUs / workers and CPUs)",
    )
    parser.add_argument("--generator", choices=["auto", "wrk", "processes"], default="auto")
    parser.add_argument("--out", type=Path, default=Path("bench-results/sweep.json"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    from sepconv_bench.cli import sample_image
    from sepconv_bench.server import running_service
    from service.core.cpus import available_cpus
    from service.process.settings import Settings

    model_dir = args.model_dir or Settings().model_dir
    models = [name for name in args.models.split(",") if name]
    cpus = available_cpus()
    configurations = sweep_configurations(cpus, args.workers, args.threads)
    measured = {c: Measured(c) for c in configurations}
    body = sample_image()
    generator = args.generator
    try:
        for round_number in range(args.rounds):
            # Alternate the order, so that a slow spell does not always fall on the same ones.
            order = configurations if round_number % 2 == 0 else configurations[::-1]
            for configuration in order:
                print(f"[round {round_number + 1}] {configuration.label}", flush=True)
                env = {"SEPCONV_RUNTIME": args.runtime, **configuration.service_env()}
                with running_service(model_dir, env) as service:
                    generator = _measure_round(
                        measured[configuration], service.url, service.pid, args, body, generator
                    )
    finally:
        body.unlink(missing_ok=True)

    rows = list(measured.values())
    results: dict[str, Any] = {
        "cpus": cpus,
        "runtime": args.runtime,
        "models": models,
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "generator": generator,
        "configurations": [m.as_dict() for m in rows],
        "summary": summarise(rows, models, args.concurrency),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print()
    print(format_sweep(results))
    print(f"\nWrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
