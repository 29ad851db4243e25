"""``sepconv-bench --attacks``: the adversarial runner against a real service, and how it finds
and calls attacks that may not exist yet."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from sepconv_bench import attacks
from sepconv_bench.cli import main as bench_main
from sepconv_bench.server import ServiceProcess

HEAD_ATTACKS = ["endless-headers", "slowloris", "slowloris-predict"]


@pytest.mark.network
@pytest.mark.timeout(900)  # a real service's start takes minutes on a machine busy training
def test_attacks_runs_one_attack_on_a_real_service_and_writes_its_figures(
    exported_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "attacks.json"
    status = bench_main(
        [
            "--attacks",
            "--model-dir",
            str(exported_models),
            "--only",
            "comparisons",
            "--duration",
            "1",
            "--json",
            str(out),
        ]
    )

    assert status == 0, capsys.readouterr().out
    results = json.loads(out.read_text())
    assert list(results["attacks"]) == ["comparisons"]
    comparisons = results["attacks"]["comparisons"]
    assert comparisons["status"] == "ok"
    assert comparisons["service_env"]["SEPCONV_COMPARE_BUDGET_S"] == "1"
    figures = comparisons["figures"]
    for label in ("/predict idle p50 (ms)", "/predict idle p99 (ms)"):
        assert figures[label] > 0
    during = [label for label in figures if "during" in label and "(ms)" in label]
    assert len(during) == 2 and all(figures[label] > 0 for label in during)
    details = comparisons["details"]
    assert details["idle"]["requests"] == details["during"]["requests"] == 20
    assert details["idle"]["non_200"] == 0
    assert sum(details["compare_statuses"].values()) >= 1
    printed = capsys.readouterr().out
    assert "comparisons" in printed and "/predict idle p50 (ms)" in printed


def test_head_attacks_missing_are_not_available_and_start_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, attacks.HEAD_ATTACKS_MODULE, None)  # import fails
    started: list[Any] = []
    monkeypatch.setattr(attacks, "running_service", lambda *a, **k: started.append(a))
    out = tmp_path / "attacks.json"

    status = attacks.main(["--only", ",".join(HEAD_ATTACKS), "--json", str(out)])

    assert status == 0 and not started
    results = json.loads(out.read_text())["attacks"]
    assert list(results) == HEAD_ATTACKS
    for outcome in results.values():
        assert outcome["status"] == "not available"
        assert attacks.HEAD_ATTACKS_MODULE in outcome["reason"]


def test_head_attacks_are_found_by_name_and_called_with_what_they_ask_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = types.ModuleType(attacks.HEAD_ATTACKS_MODULE)
    calls: dict[str, dict[str, Any]] = {}

    def endless_header_figures(url: str, pid: int, *, duration_s: float = 9.0) -> dict[str, Any]:
        calls["endless"] = {"url": url, "pid": pid, "duration_s": duration_s}
        return {"growth_kib_per_connection": 1.5, "nested": {"held": 3}}

    def predict_during_slowloris(url: str, *, connections: int = 1) -> list[dict[str, Any]]:
        calls["predict"] = {"url": url, "connections": connections}
        return [{"p50_ms": 2.0}]

    for function in (endless_header_figures, predict_during_slowloris):
        function.__module__ = module.__name__
        setattr(module, function.__name__, function)
    monkeypatch.setitem(sys.modules, attacks.HEAD_ATTACKS_MODULE, module)
    service = ServiceProcess("http://127.0.0.1:1", 42)
    options = attacks.AttackOptions(duration_s=2.0, slowloris_connections=3000)
    by_name = {attack.name: attack for attack in attacks.ATTACKS}

    endless = by_name["endless-headers"].resolve()
    held = by_name["slowloris"].resolve()
    during = by_name["slowloris-predict"].resolve()

    assert isinstance(held, str) and "held connections" in held  # no such function yet
    assert callable(endless) and callable(during)
    figures, _ = endless(service, options)
    assert figures == {
        "function": "endless_header_figures",
        "growth_kib_per_connection": 1.5,
        "nested.held": 3,
    }
    assert calls["endless"] == {"url": service.url, "pid": 42, "duration_s": 2.0}
    figures, _ = during(service, options)
    assert figures["p50_ms"] == 2.0
    assert calls["predict"] == {"url": service.url, "connections": 3000}


def test_only_refuses_an_unknown_attack(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        attacks.main(["--only", "decode,nonsense"])

    assert "unknown attack nonsense" in capsys.readouterr().err


def test_decode_figures_name_the_worst_jpeg_and_the_memory_peaks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sepconv_bench import decode_attacks

    def figure(case: str, cpu_s: float, peak: float, settled: float) -> Any:
        return decode_attacks.DecodeAttackFigures(
            case, 100, 200, None, cpu_s + 0.1, cpu_s, [200] * 7 + [503], 90.0, peak, settled
        )

    seen: dict[str, Any] = {}

    def fake(url: str, pid: int | None = None, **options: Any) -> list[Any]:
        seen.update(url=url, pid=pid, **options)
        return [
            figure("16-bit PNG 6324x6324", 2.0, 700.0, 120.0),
            figure("JPEG 65000x600 of 4000 empty scans", 0.01, 95.0, 95.0),
            figure("JPEG 6324x6324 4:4:4 of 64 scans", 1.2, 400.0, 130.0),
        ]

    monkeypatch.setattr(decode_attacks, "decode_attack_figures", fake)
    figures, details = attacks._decode(
        ServiceProcess("http://127.0.0.1:1", 7), attacks.AttackOptions(duration_s=14.0)
    )

    assert seen["pid"] == 7 and seen["burst"] == 8 and seen["settle_s"] == 2.0
    assert figures["worst JPEG"] == "JPEG 6324x6324 4:4:4 of 64 scans"
    assert figures["worst JPEG: decode CPU (s)"] == 1.2
    assert figures["peak RSS, 8 worst-case uploads at once (MiB)"] == 700.0
    assert figures["peak RSS: case"] == "16-bit PNG 6324x6324"
    assert figures["settled RSS, 2 s after a burst, highest (MiB)"] == 130.0
    assert figures["burst answers"] == "21x200, 3x503"
    assert len(details) == 3
