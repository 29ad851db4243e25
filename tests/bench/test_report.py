"""The benchmark's printed table: what it shows when a part was not measured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sepconv_bench.report import draw_figure, format_table


def http_row(target: str, concurrency: int, share: float | None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "target": target,
        "concurrency": concurrency,
        "requests_per_second": 100.0 * concurrency,
        "p50_ms": 2.0,
        "p95_ms": 3.0,
        "p99_ms": 4.0,
        "non_200": 0,
        "errors": 0,
    }
    if share is not None:
        row["share_of_engine"] = share
    return row


def results(engine: list[dict[str, Any]], share: float | None) -> dict[str, Any]:
    return {
        "engine": engine,
        "engine_best": {},
        "generator": "wrk",
        "ceiling_rps": 2000.0,
        "http": [http_row("separable", c, share) for c in (1, 32)],
    }


def test_report_without_engine_figures_has_no_engine_table_and_no_share() -> None:
    table = format_table(results([], share=None))

    assert "Engine" not in table
    assert table.startswith("HTTP (given service; wrk")
    rows = [line for line in table.splitlines() if line.startswith("separable")]
    assert len(rows) == 2 and all(row.split()[-1] == "-" for row in rows)
    assert "0%" not in table


def test_report_with_engine_figures_shows_the_served_share() -> None:
    engine = [
        {
            "model": "separable",
            "runtime": "tensorflow",
            "batch_size": 32,
            "latency_ms_p50": 20.0,
            "images_per_second": 1600.0,
        }
    ]

    table = format_table(results(engine, share=0.5))

    assert table.startswith("Engine (in process, no HTTP)")
    assert "1600.0" in table
    rows = [line for line in table.splitlines() if line.startswith("separable ")]
    assert [row.split()[-1] for row in rows][-2:] == ["50%", "50%"]


def test_report_figure_is_drawn_without_engine_figures(tmp_path: Path) -> None:
    path = tmp_path / "bench.png"

    draw_figure(results([], share=None), path)

    assert path.stat().st_size > 10_000
