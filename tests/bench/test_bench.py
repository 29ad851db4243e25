from __future__ import annotations

import json
from pathlib import Path

import pytest

from sepconv_bench.cli import main as bench_main
from sepconv_bench.http_load import check_loopback, run_load
from service.process.settings import Settings
from tests.helpers.servers import live_server
from tests.helpers.tools import require_executable


@pytest.mark.network
def test_sepconv_bench_reports_engine_and_http(
    exported_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench"
    status = bench_main(
        [
            "--model-dir",
            str(exported_models),
            "--runtimes",
            "tensorflow",
            "--batch-sizes",
            "1,4",
            "--concurrency",
            "1,4",
            "--duration",
            "1",
            "--skip-naive",
            "--workers",
            "2",
            "--out",
            str(out),
        ]
    )
    assert status == 0
    results = json.loads((out / "bench.json").read_text())
    engine = {(r["model"], r["batch_size"]) for r in results["engine"]}
    assert engine == {(m, b) for m in ("regular", "separable") for b in (1, 4)}
    assert all(r["images_per_second"] > 0 for r in results["engine"])
    http = {(r["target"], r["concurrency"]): r for r in results["http"]}
    assert set(http) == {(m, c) for m in ("regular", "separable") for c in (1, 4)}
    for row in http.values():
        assert row["requests"] > 0 and row["non_200"] == 0 and row["errors"] == 0
        assert 0 < row["p50_ms"] <= row["p99_ms"]
        assert row["share_of_engine"] > 0
    assert results["ceiling_rps"] > 0
    assert results["service"]["workers"] == 2
    assert (out / "bench.png").stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert "Engine (in process, no HTTP)" in printed and "of engine" in printed
    assert "HTTP (2 server processes; " in printed


@pytest.mark.network
def test_run_load_process_generator_counts_non_200(exported_models: Path, tmp_path: Path) -> None:
    body = tmp_path / "not-an-image.png"
    body.write_bytes(b"plain text, not a PNG")
    with live_server(Settings(model_dir=exported_models)) as url:
        result = run_load(
            f"{url}/predict?model=separable", "separable", 2, 1.0, body, generator="processes"
        )
    assert result.generator == "processes"
    assert result.requests > 0 and result.non_200 == result.requests


@pytest.mark.network
def test_run_load_wrk_generator(exported_models: Path) -> None:
    require_executable("wrk", "apt-get install wrk")
    with live_server(Settings(model_dir=exported_models)) as url:
        result = run_load(f"{url}/health/live", "ceiling", 4, 1.0, None, generator="wrk")
    assert result.generator == "wrk" and result.requests > 50 and result.non_200 == 0


def test_check_loopback_refuses_remote_targets() -> None:
    check_loopback("http://127.0.0.1:8000", allow_remote=False)
    with pytest.raises(SystemExit, match="refusing"):
        check_loopback("http://example.com:8000", allow_remote=False)
    check_loopback("http://example.com:8000", allow_remote=True)


@pytest.mark.network
@pytest.mark.slow
def test_sepconv_bench_serves_each_model_on_each_runtime(
    runtime_artifact_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("onnxruntime")
    out = tmp_path / "bench"
    runtimes = ["tensorflow", "onnxruntime-int8"]

    status = bench_main(
        [
            "--model-dir",
            str(runtime_artifact_models),
            "--skip-engine",
            "--served-runtimes",
            ",".join(runtimes),
            "--concurrency",
            "1",
            "--duration",
            "1",
            "--workers",
            "1",
            "--out",
            str(out),
        ]
    )

    assert status == 0
    results = json.loads((out / "bench.json").read_text())
    served = {(r["target"], r["runtime"]): r for r in results["http"]}
    assert set(served) == {(m, r) for m in ("regular", "separable") for r in runtimes}
    for row in served.values():  # a runtime the service had not loaded would answer 409
        assert row["requests"] > 0 and row["non_200"] == 0 and row["errors"] == 0
    printed = capsys.readouterr().out
    assert "onnxruntime-int8" in printed.split("HTTP (")[-1]
