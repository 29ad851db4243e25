"""``sepconv-bench --sweep-workers``: the configurations it tries, its verdict, and one real run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sepconv_bench.cli import main as bench_main
from sepconv_bench.server import serving_gauges
from sepconv_bench.sweep import Configuration, Measured, summarise, sweep_configurations


def test_sweep_configurations_try_each_count_with_one_thread_the_share_and_all() -> None:
    labels = [c.label for c in sweep_configurations(2)]
    assert labels == ["default", "1x1", "1x2", "2x1", "2x2"]
    on_six = {(c.workers, c.threads) for c in sweep_configurations(6)[1:]}
    assert {w for w, _ in on_six} == {1, 2, 4, 6}
    assert {t for w, t in on_six if w == 4} == {1, 6}  # the share, 6 // 4, is one thread
    assert [c.label for c in sweep_configurations(8, [3], [2])] == ["default", "3x2"]


def test_sweep_default_runs_with_the_settings_own_defaults() -> None:
    assert Configuration(None, None).service_env() == {
        "SEPCONV_WORKERS": "auto",
        "SEPCONV_INTRA_OP_THREADS": "0",
    }
    assert Configuration(2, 1).service_env()["SEPCONV_WORKERS"] == "2"


def test_summarise_names_the_best_and_the_defaults_share() -> None:
    # What each ran as, from its gauges: the default resolved to 2 workers of 1 thread.
    default = Measured(Configuration(None, None), {"regular@32": 450.0, "separable@32": 1400.0})
    default.workers, default.threads = 2, 1
    one = Measured(
        Configuration(1, 2), {"regular@32": 390.0, "separable@32": 760.0}, workers=1, threads=2
    )
    two = Measured(
        Configuration(2, 1), {"regular@32": 500.0, "separable@32": 1350.0}, workers=2, threads=1
    )
    summary = summarise([default, one, two], ["regular", "separable"], [32])
    regular = summary["regular@32"]
    assert regular["best"] == "2x1"
    assert regular["default_share_of_best"] == 0.9
    # The default is 2x1, the best configuration: its runs and 2x1's differ by drift alone.
    assert regular["default_configuration"] == "2x1"
    assert regular["default_configuration_share_of_best"] == 1.0
    assert summary["separable@32"]["best"] == "default"
    assert summary["separable@32"]["default_share_of_best"] == 1.0
    # A default that resolved to a configuration nobody else ran is judged by its runs alone.
    default.workers = 4
    assert (
        summarise([default, two], ["regular"], [32])["regular@32"][
            "default_configuration_share_of_best"
        ]
        == 0.9
    )


def test_serving_gauges_read_workers_and_threads() -> None:
    text = "# TYPE sepconv_workers gauge\nsepconv_workers 2.0\nsepconv_engine_threads 1.0\n"
    assert serving_gauges(text) == (2, 1)
    assert serving_gauges("sepconv_requests_total 3.0\n") == (None, None)


@pytest.mark.network
def test_sweep_workers_serves_each_configuration_and_the_default(
    exported_models: Path, tmp_path: Path
) -> None:
    out = tmp_path / "sweep.json"
    status = bench_main(
        [
            "--sweep-workers",
            "--model-dir",
            str(exported_models),
            "--models",
            "separable",
            "--workers",
            "1",
            "--threads",
            "1",
            "--concurrency",
            "2",
            "--duration",
            "1",
            "--generator",
            "processes",
            "--out",
            str(out),
        ]
    )
    assert status == 0
    results = json.loads(out.read_text())
    rows = {row["label"]: row for row in results["configurations"]}
    assert set(rows) == {"default", "1x1"}
    assert (rows["1x1"]["workers"], rows["1x1"]["threads"]) == (1, 1)
    # The default ran as what auto made of this machine, as the service itself reports.
    assert rows["default"]["workers"] is not None and rows["default"]["workers"] >= 1
    for row in rows.values():
        assert row["requests_per_second"]["separable@2"] > 0
        assert row["runs"]["separable@2"] == [row["requests_per_second"]["separable@2"]]
        assert all(mib > 50 for mib in row["resident_mib_per_worker"])
        assert len(row["resident_mib_per_worker"]) == row["workers"]
    verdict = results["summary"]["separable@2"]
    assert verdict["best"] in rows and 0 < verdict["default_share_of_best"] <= 1
