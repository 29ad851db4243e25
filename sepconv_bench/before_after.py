"""The served hot path of two checkouts in one sitting, alternating: raw-body
``POST /predict?model=M&top_k=1``, one worker each, wrk at concurrency 1 and 32, 10 s a cell,
two rounds in opposite orders. Each checkout serves its own committed models.

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
from sepconv_bench.server import free_port

AFTER = Path(__file__).resolve().parents[1]
LAUNCH = (
    "import sys, runpy; "
    "sys.meta_path = [f for f in sys.meta_path if 'editable' not in getattr(f, '__module__', '')]; "
    "sys.path.insert(0, sys.argv[1]); runpy.run_module('service', run_name='__main__')"
)


def start(root: Path, before: bool) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "SEPCONV_MODEL_DIR": str(root / "models"),
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
    args = parser.parse_args(argv)
    body = sample_image()
    rows: list[dict[str, object]] = []
    order = [("before", args.before), ("after", AFTER)]
    for round_ in range(2):
        for label, root in order if round_ == 0 else order[::-1]:
            process, url = start(root, before=label == "before")
            try:
                for model in ("regular", "separable"):
                    for concurrency in (1, 32):
                        result = run_load(
                            f"{url}/predict?model={model}&top_k=1", model, concurrency, 10, body
                        ).as_dict()
                        row = {"version": label, "round": round_, **result}
                        rows.append(row)
                        print(
                            f"{label:<6} r{round_} {model:<10} c={concurrency:<3} "
                            f"{result['requests_per_second']:8.1f} req/s "
                            f"p50 {result['p50_ms']:7.2f} p99 {result['p99_ms']:7.2f} "
                            f"non-200 {result['non_200']}",
                            flush=True,
                        )
            finally:
                process.terminate()
                process.wait(30)
    body.unlink(missing_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
