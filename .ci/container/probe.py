"""What .ci/container-check asks a running container, from the host.

    probe.py predict URL ANSWER.json     # POST one image to /predict, both models must answer
    probe.py compare A.json B.json TOL   # the two answers' probabilities agree within TOL
    probe.py scraped PROMETHEUS_URL JOB  # Prometheus scrapes JOB (up) and loaded the rules
"""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

MODELS = {"regular", "separable"}


def test_image() -> bytes:
    """A fixed 32x32 PNG with structure in it (a gradient and a square), not a flat colour."""
    rows, columns = np.mgrid[0:32, 0:32]
    pixels = np.stack([rows * 8, columns * 8, (rows + columns) * 4], axis=-1)
    pixels[8:20, 10:22] = (230, 40, 40)
    buffer = io.BytesIO()
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def predict(url: str, answer_path: Path) -> None:
    response = httpx.post(
        f"{url}/predict", content=test_image(), headers={"Content-Type": "image/png"}, timeout=30
    )
    if response.status_code != 200:
        sys.exit(f"POST {url}/predict answered {response.status_code}: {response.text[:500]}")
    predictions = response.json()["predictions"]
    answered = {p["model"] for p in predictions}
    if answered != MODELS:
        sys.exit(f"POST {url}/predict answered for {sorted(answered)}, expected {sorted(MODELS)}")
    probabilities = {p["model"]: p["probabilities"] for p in predictions}
    answer_path.write_text(json.dumps(probabilities, indent=1, sort_keys=True))
    labels = ", ".join(f"{p['model']}={p['label']} ({p['confidence']:.3f})" for p in predictions)
    print(f"{url}/predict: {labels}")


def compare(first: Path, second: Path, tolerance: float) -> None:
    a, b = json.loads(first.read_text()), json.loads(second.read_text())
    worst = max(abs(a[model][label] - b[model][label]) for model in a for label in a[model])
    print(f"largest probability difference {first.name} vs {second.name}: {worst:.2e}")
    if worst > tolerance:
        sys.exit(f"the two images disagree by {worst:.2e}, more than {tolerance:g}")


def scraped(prometheus: str, job: str, timeout_s: float = 90.0) -> None:
    """Wait until Prometheus has scraped ``job`` successfully and evaluates its rule groups."""
    deadline = time.monotonic() + timeout_s
    health, groups = "no target", 0
    while time.monotonic() < deadline:
        try:
            targets = httpx.get(f"{prometheus}/api/v1/targets", timeout=5).json()["data"]
            rules = httpx.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]
        except (httpx.HTTPError, ValueError, KeyError):
            time.sleep(1)
            continue
        ours = [t for t in targets["activeTargets"] if t["labels"].get("job") == job]
        health = ours[0]["health"] if ours else "no target"
        groups = len(rules["groups"])
        if health == "up" and groups:
            up = httpx.get(
                f"{prometheus}/api/v1/query", params={"query": f'up{{job="{job}"}}'}, timeout=5
            ).json()["data"]["result"]
            print(f"Prometheus scrapes {ours[0]['scrapeUrl']}: up={up[0]['value'][1]}, "
                  f"{groups} rule groups loaded")
            return
        time.sleep(1)
    sys.exit(f"Prometheus at {prometheus}: job {job!r} is {health}, {groups} rule groups")


def main() -> None:
    command, *arguments = sys.argv[1:]
    if command == "predict":
        predict(arguments[0].rstrip("/"), Path(arguments[1]))
    elif command == "compare":
        compare(Path(arguments[0]), Path(arguments[1]), float(arguments[2]))
    elif command == "scraped":
        scraped(arguments[0].rstrip("/"), arguments[1])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
