"""What .ci/container-check asks a running container, from the host.

    probe.py predict URL ANSWER.json     # POST one image to /predict, both models must answer
    probe.py compare A.json B.json TOL   # the two answers' probabilities agree within TOL
"""

from __future__ import annotations

import io
import json
import sys
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


def main() -> None:
    command, *arguments = sys.argv[1:]
    if command == "predict":
        predict(arguments[0].rstrip("/"), Path(arguments[1]))
    elif command == "compare":
        compare(Path(arguments[0]), Path(arguments[1]), float(arguments[2]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
