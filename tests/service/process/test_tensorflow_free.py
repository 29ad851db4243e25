"""Serving on ONNX Runtime or LiteRT never imports TensorFlow or Keras: the slim image depends
on it."""

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
# The slim image installs neither the onnx package nor matplotlib: importing them must fail here.
sys.modules["onnx"] = None
sys.modules["matplotlib"] = None
import numpy as np
from PIL import Image
from fastapi.testclient import TestClient

import service
import service.main
from service.main import create_app
from service.process.settings import Settings

settings = Settings(
    model_dir=sys.argv[1], runtime=sys.argv[2], compare_runtimes=sys.argv[3], warmup_runs=1
)
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
    "loaded": sorted(
        {r["runtime"] for m in models["models"] for r in m["runtimes"] if r["loaded"]}
    ),
    "predictions": len(raw.json()["predictions"]),
    "heavy": sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")),
}))
"""


# The serving runtime, the other runtimes loaded beside it, the files they need.
SERVED = {
    "onnxruntime": ("onnxruntime-int8", ("model.onnx", "model_int8.onnx")),
    "litert": ("litert-int8", ("model.tflite", "model_int8.tflite")),
}


@pytest.mark.parametrize("runtime", sorted(SERVED))
def test_serving_never_imports_tensorflow_or_keras(runtime: str) -> None:
    if runtime == "litert":
        pytest.importorskip("ai_edge_litert")
    others, files = SERVED[runtime]
    missing = [
        f"{name}/1/{file}"
        for name in ("regular", "separable")
        for file in files
        if not (REPOSITORY_MODELS / name / "1" / file).is_file()
    ]
    if missing:
        pytest.skip(f"the committed models lack {', '.join(missing)} (run sepconv-export)")
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM, str(REPOSITORY_MODELS), runtime, others],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["statuses"] == [200, 200, 200]
    assert report["runtimes"] == [runtime] and report["predictions"] == 2
    assert report["loaded"] == sorted([runtime, others])
    assert report["heavy"] == []
