"""Serving on ONNX Runtime never imports TensorFlow or Keras: the slim image depends on it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")

REPOSITORY_MODELS = Path(__file__).resolve().parents[3] / "models"

# Runs in a fresh interpreter: this test process has long since imported TensorFlow.
PROGRAM = r"""
import io, json, sys, time
import numpy as np
from PIL import Image
from fastapi.testclient import TestClient

import service
import service.main
from service.main import create_app
from service.process.settings import Settings

settings = Settings(model_dir=sys.argv[1], runtime="onnxruntime", warmup_runs=1)
buffer = io.BytesIO()
Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(buffer, format="PNG")
with TestClient(create_app(settings)) as client:
    for _ in range(600):
        if client.get("/health/ready").status_code == 200:
            break
        time.sleep(0.05)
    raw = client.post("/predict", content=buffer.getvalue(), headers={"Content-Type": "image/png"})
    upload = client.post("/predict", files={"file": ("a.png", buffer.getvalue(), "image/png")})
    compare = client.get("/compare", params={"repeats": 2, "warmup": 0})
    models = client.get("/models").json()
print(json.dumps({
    "statuses": [raw.status_code, upload.status_code, compare.status_code],
    "runtimes": sorted({m["runtime"] for m in models["models"]}),
    "predictions": len(raw.json()["predictions"]),
    "heavy": sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")),
}))
"""


@pytest.mark.skipif(
    not all(
        (REPOSITORY_MODELS / name / "1" / "model.onnx").is_file()
        for name in ("regular", "separable")
    ),
    reason="the committed models' model.onnx files are missing",
)
def test_onnx_runtime_serving_never_imports_tensorflow_or_keras() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM, str(REPOSITORY_MODELS)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["statuses"] == [200, 200, 200]
    assert report["runtimes"] == ["onnxruntime"] and report["predictions"] == 2
    assert report["heavy"] == []
