"""``sepconv-serve``'s flags, its fast answers (help, version, a taken port) and its start-up log.

Each command runs as a real child process: what it imports, prints and exits with is the thing
under test.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.core.cpus import available_cpus
from service.process.cli import CANNOT_LISTEN, FLAGS, INVALID_SETTINGS, read_settings
from service.process.settings import Settings
from service.process.workers import host_plan
from tests.helpers import REPOSITORY
from tests.helpers.servers import SERVE, free_port, kill_process_group, wait_until_ready

# Runs the command's entry point in a fresh interpreter and reports, whatever way it exits,
# whether TensorFlow was imported meanwhile.
PROBE = """
import atexit, sys
atexit.register(lambda: print("tensorflow imported:", "tensorflow" in sys.modules, file=sys.stderr))
from service.process.cli import serve_main
serve_main(sys.argv[1:])
"""
# TensorFlow takes about 10 s to import here; a command that answers well within this did not.
FAST_S = 8.0


def run_probe(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str, float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    return done.returncode, done.stdout, done.stderr, time.monotonic() - started


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_serve_help_lists_every_flag_with_its_default_without_tensorflow() -> None:
    status, out, err, seconds = run_probe("--help")
    assert status == 0, err
    for flag in FLAGS:
        option = "--" + flag.replace("_", "-")
        assert option in out
        assert f"$SEPCONV_{flag.upper()}" in out
    assert "default 8000" in out and "--version" in out
    assert "tensorflow imported: False" in err
    assert seconds < FAST_S


def test_serve_version_without_tensorflow() -> None:
    status, out, err, _ = run_probe("--version")
    assert status == 0 and out.startswith("sepconv-serve ")
    assert "tensorflow imported: False" in err


def test_serve_real_command_answers_help() -> None:
    done = subprocess.run([str(SERVE), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "usage: sepconv-serve" in done.stdout


def test_serve_refuses_a_taken_port_at_once(taken_port: int) -> None:
    status, out, err, seconds = run_probe("--port", str(taken_port))
    assert status == CANNOT_LISTEN
    lines = [line for line in err.splitlines() if not line.startswith("tensorflow imported:")]
    assert len(lines) == 1, err
    entry = json.loads(lines[0])
    assert entry["level"] == "error"
    assert f"127.0.0.1:{taken_port}" in entry["message"]
    assert "address already in use" in entry["message"] and "--port" in entry["message"]
    assert "tensorflow imported: False" in err
    assert seconds < FAST_S


def test_serve_invalid_flag_values_are_refused_in_one_line() -> None:
    status, _, err, _ = run_probe("--port", "70000")
    assert status == INVALID_SETTINGS
    assert "SEPCONV_PORT: Input should be less than or equal to 65535" in err
    assert "Traceback" not in err
    status, _, err, _ = run_probe("--workers", "0")
    assert status == INVALID_SETTINGS
    assert "SEPCONV_WORKERS: Value error, got '0': expected a number of processes" in err
    status, _, err, _ = run_probe("--runtime", "pytorch")
    assert status == INVALID_SETTINGS and "invalid choice: 'pytorch'" in err


def test_serve_flags_override_their_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SEPCONV_PORT", "8123")
    monkeypatch.setenv("SEPCONV_WORKERS", "3")
    monkeypatch.setenv("SEPCONV_LOG_LEVEL", "debug")
    from_environment = read_settings([])
    assert (from_environment.port, from_environment.workers) == (8123, 3)
    flagged = read_settings(
        [
            "--port",
            "9001",
            "--host",
            "0.0.0.0",
            "--workers",
            "2",
            "--model-dir",
            str(tmp_path),
            "--runtime",
            "onnxruntime",
            "--log-level",
            "warning",
        ]
    )
    assert (flagged.port, flagged.host, flagged.workers) == (9001, "0.0.0.0", 2)
    assert read_settings(["--workers", "auto"]).workers == "auto"
    assert (flagged.model_dir, flagged.runtime, flagged.log_level) == (
        tmp_path,
        "onnxruntime",
        "warning",
    )


@pytest.mark.network
@pytest.mark.slow
def test_serve_start_up_log_is_quiet_json_and_says_ready_once_per_worker(
    exported_models: Path, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    # The flags, not the environment, choose the port and the models: SEPCONV_PORT points at a
    # port nothing may use, so a flag that did not win would show.
    env = {**os.environ, "SEPCONV_PORT": "1", "SEPCONV_WARMUP_RUNS": "1"}
    env.pop("SEPCONV_WORKERS", None)  # the default, auto: one worker per CPU here
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(SERVE), "--port", str(port), "--model-dir", str(exported_models)],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_until_ready(url, lambda: process.poll() is None, 120), log.read_text()
        planned = host_plan("auto", ["tensorflow"]).workers
        deadline = time.monotonic() + 30
        while log.read_text().count("ready: ") < planned and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        kill_process_group(process)
    lines = log.read_text().splitlines()
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    messages = [e["message"] for e in entries]
    # The first line says how many workers and why, with the facts it was decided from.
    plan = entries[0]
    assert plan["message"].startswith(f"{planned} worker")
    assert plan["workers"] == planned and plan["cpus"] == available_cpus()
    assert plan["threads_per_worker"] == max(1, available_cpus() // planned)
    assert {"reason", "available_memory_mib", "worker_memory_mib", "gpu_visible"} <= set(plan)
    # Each worker says ready once, naming itself when there are several.
    ready = [e for e in entries if e["message"] == f"ready: {url}"]
    assert len(ready) == planned
    if planned > 1:
        assert len({e["worker_pid"] for e in ready}) == planned
    assert messages.index("models loaded") < messages.index(f"ready: {url}")
    listening = [m for m in messages if m.startswith("listening on ")]
    assert listening == [f"listening on {url}; ready once the models are loaded"]
    assert not any("Uvicorn running" in m for m in messages)
    assert {e["logger"] for e in entries} >= {"uvicorn.error", "sepconv.main"}
    text = "\n".join(lines)
    for noise in ("cuInit", "cuda drivers", "absl::InitializeLog", "oneDNN"):
        assert noise not in text


def test_settings_default_model_dir_is_the_checkouts(monkeypatch: pytest.MonkeyPatch) -> None:
    # An editable install serves the committed models from any working directory.
    monkeypatch.delenv("SEPCONV_MODEL_DIR", raising=False)
    monkeypatch.chdir("/")
    assert Settings().model_dir == REPOSITORY / "models"
