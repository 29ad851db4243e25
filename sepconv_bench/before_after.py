"""The served hot path of two checkouts in one sitting: raw-body ``POST /predict?model=M&top_k=1``,
one worker each, both up at once, wrk at concurrency 1 and 32, 10 s a run, each cell run on both
back to back in alternating orders (``--rounds`` pairs). Each checkout serves its own committed
models (or both the folder ``--models`` names). Beside wrk's figures each run records the server's
CPU time per request, which a busy host's stolen time (up to half of it on this 2-core machine)
does not inflate the way it does latency and throughput.

    git worktree add /tmp/before d72e7df     # the last commit before the restructuring
    python -m sepconv_bench.before_after --before /tmp/before --out before-after.json

The older checkout's ``service`` is imported from its own folder (the editable install's import
hook is taken out for it); the current one runs as installed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from sepconv_bench.cli import sample_image
from sepconv_bench.http_load import run_load
from sepconv_bench.proc_stats import cpu_seconds
from sepconv_bench.server import free_port

AFTER = Path(__file__).resolve().parents[1]
LAUNCH = (
    "import sys, runpy; "
    "sys.meta_path = [f for f in sys.meta_path if 'editable' not in getattr(f, '__module__', '')]; "
    "sys.path.insert(0, sys.argv[1]); runpy.run_module('service', run_name='__main__')"
)


def start(
    root: Path, before: bool, models: Path | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "SEPCONV_MODEL_DIR": str(models or root / "models"),
        "SEPCONV_PORT": str(port),
        "SEPCONV_HOST": "127.0.0.1",
        "SEPCONV_WORKERS": "1",
        "SEPCONV_LOG_LEVEL": "warning",
    }
    process = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, str(root)] if before else [sys.executable, "-m", "service"],
        env=env,
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit(f"{root} never became ready")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="the older checkout")
    parser.add_argument("--out", type=Path, default=Path("before-after.json"))
    parser.add_argument("--rounds", type=int, default=2, help="pairs of runs of every cell")
    parser.add_argument(
        "--models",
        type=Path,
        help="serve this model folder from both checkouts (tells the code's cost from the models')",
    )
    args = parser.parse_args(argv)
    body = sample_image()
    rows: list[dict[str, object]] = []
    servers: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    try:
        # Both up at once, each idle while the other is measured: a cell's two runs are
        # seconds apart, so the machine's drift (10-20% over minutes on 2 cores) cancels in
        # their ratio, and the order within a pair alternates from round to round.
        servers["before"] = start(args.before, before=True, models=args.models)
        servers["after"] = start(AFTER, before=False, models=args.models)
        for round_ in range(args.rounds):
            for model in ("regular", "separable"):
                for concurrency in (1, 32):
                    labels = ["before", "after"] if round_ % 2 == 0 else ["after", "before"]
                    for label in labels:
                        process, url = servers[label]
                        cpu_before = cpu_seconds(process.pid)
                        load = run_load(
                            f"{url}/predict?model={model}&top_k=1", model, concurrency, 10, body
                        )
                        cpu_ms = (
                            (cpu_seconds(process.pid) - cpu_before) * 1000 / max(load.requests, 1)
                        )
                        result = load.as_dict()
                        rows.append(
                            {
                                "version": label,
                                "round": round_,
                                **result,
                                "server_cpu_ms_per_request": round(cpu_ms, 3),
                            }
                        )
                        print(
                            f"{label:<6} r{round_} {model:<10} c={concurrency:<3} "
                            f"{result['requests_per_second']:8.1f} req/s "
                            f"p50 {result['p50_ms']:7.2f} p99 {result['p99_ms']:7.2f} "
                            f"cpu/request {cpu_ms:6.2f} ms non-200 {result['non_200']}",
                            flush=True,
                        )
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(30)
        body.unlink(missing_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
