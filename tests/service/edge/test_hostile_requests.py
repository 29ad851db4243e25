"""Hostile requests against the real app: malformed bodies, model names, queries, file names.

Each gets its documented answer, never a 500, never a stack trace or a server path, and nothing
a client sends reaches the file system; the service is unchanged after the whole module.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.process.settings import MiB
from tests.helpers.hostile import (  # noqa: F401 - the fixtures are found by name
    PNG,
    REFERENCE,
    assert_unchanged,
    baseline,
    client,
    model_dir,
    pattern,
    upload,
)
from tests.helpers.reliability import assert_clean, assert_error

pytestmark = pytest.mark.usefixtures("baseline")

MULTIPART_PART = (
    b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
    b"Content-Type: image/png\r\n\r\n" + REFERENCE + b"\r\n--B--\r\n"
)


def test_predict_refuses_malformed_requests(client: TestClient, model_dir: Path) -> None:
    image = ("image.png", REFERENCE, "image/png")
    cases: list[tuple[str, Any, int, str]] = [
        ("empty body", client.post("/predict"), 400, "MISSING_FILE"),
        (
            "empty image body",
            client.post("/predict", content=b"", headers=PNG),
            400,
            "MISSING_FILE",
        ),
        (
            "wrong field name",
            client.post("/predict", files={"image": image}),
            400,
            "MISSING_FILE",
        ),
        (
            "two files",
            client.post("/predict", files=[("file", image), ("file", image)]),
            400,
            "TOO_MANY_FILES",
        ),
        (
            "thousands of empty fields",
            client.post("/predict", data={f"f{i}": "" for i in range(5000)}, files={"file": image}),
            400,
            "INVALID_MULTIPART",
        ),
        (
            "huge text field",
            client.post("/predict", data={"note": "x" * (5 * MiB)}, files={"file": image}),
            400,
            "INVALID_MULTIPART",
        ),
        (
            "JSON",
            client.post("/predict", json={"image": base64.b64encode(REFERENCE).decode()}),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            "form-urlencoded",
            client.post("/predict", data={"file": "abc"}),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            "wrong boundary",
            client.post(
                "/predict",
                content=MULTIPART_PART,
                headers={"content-type": "multipart/form-data; boundary=other"},
            ),
            400,
            "INVALID_MULTIPART",
        ),
        (
            "missing boundary",
            client.post(
                "/predict", content=MULTIPART_PART, headers={"content-type": "multipart/form-data"}
            ),
            400,
            "INVALID_MULTIPART",
        ),
        (
            "megabytes of preamble",
            client.post(
                "/predict",
                content=b"x" * (3 * MiB) + b"\r\n" + MULTIPART_PART,
                headers={"content-type": "multipart/form-data; boundary=B"},
            ),
            400,
            "INVALID_MULTIPART",
        ),
        (
            "body over the size cap",
            client.post("/predict", content=b"\x89PNG" + b"\0" * (10 * MiB), headers=PNG),
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        (
            "65 files to /predict/batch",
            client.post("/predict/batch", files=[("files", image)] * 65),
            400,
            "TOO_MANY_FILES",
        ),
    ]
    for name, response, status, code in cases:
        assert response.status_code == status, (name, response.text[:300])
        assert_error(response, status, code, server_paths=[model_dir])


def test_predict_ignores_multipart_blank_line_preamble(client: TestClient) -> None:
    # Leading blank lines before the first boundary are legal (RFC 2046) and cost nothing.
    response = client.post(
        "/predict",
        content=b"\r\n" * MiB + MULTIPART_PART,
        headers={"content-type": "multipart/form-data; boundary=B"},
    )
    assert response.status_code == 200, response.text


MODEL_NAMES = [
    "nope",
    "",
    "all ",
    "REGULAR",
    "../models",
    "..",
    "%2e%2e",
    "../decoy",
    "regular/../separable",
    "/etc/passwd",
    "..\\..\\windows\\win.ini",
    "regular\x00",
]


@pytest.mark.parametrize("name", MODEL_NAMES + ["<model dir>/separable", "<decoy>"])
def test_predict_unknown_model_names_are_404(
    client: TestClient, model_dir: Path, name: str
) -> None:
    # Absolute paths of real SavedModels, the one inside the model directory included.
    name = name.replace("<model dir>", str(model_dir)).replace(
        "<decoy>", str(model_dir.parent / "decoy")
    )
    response = client.post("/predict", params={"model": name}, content=REFERENCE, headers=PNG)
    assert_error(response, 404, "MODEL_NOT_FOUND", server_paths=[model_dir], echoed=name)
    response = client.get("/compare", params={"models": name, "repeats": 1})
    if name.strip() in ("", "all"):
        assert response.status_code == 200, response.text  # empty or blank means every model
    else:
        assert_error(response, 404, "MODEL_NOT_FOUND", server_paths=[model_dir], echoed=name)


@pytest.mark.parametrize(
    "path",
    [
        "/predict?model=%2e%2e",
        "/predict?model=..%2fdecoy",
        "/predict?model=%2Fetc%2Fpasswd",
        "/models/%2e%2e",
        "/models/..%2fdecoy",
        "/models/%2Fetc%2Fpasswd",
        "/models/..%5c..%5cdecoy",
        "/models/nope/history",
        "/models/%2e%2e/history",
        "/models/%00",
    ],
)
def test_path_like_model_names_never_reach_the_file_system(
    client: TestClient, model_dir: Path, path: str
) -> None:
    if path.startswith("/predict"):
        response = client.post(path, content=REFERENCE, headers=PNG)
    else:
        response = client.get(path)
    assert_error(response, 404, ("MODEL_NOT_FOUND", "NOT_FOUND"), server_paths=[model_dir])
    names = [m["name"] for m in client.get("/models").json()["models"]]
    assert names == ["regular", "separable"]


INVALID_QUERIES = [
    ("post", "/predict", {"top_k": "0"}),
    ("post", "/predict", {"top_k": "11"}),
    ("post", "/predict", {"top_k": "-1"}),
    ("post", "/predict", {"top_k": "three"}),
    ("post", "/predict", {"top_k": "2.5"}),
    ("post", "/predict", {"top_k": "1e3"}),
    ("post", "/predict", {"top_k": ""}),
    ("post", "/predict", {"preview": "maybe"}),
    ("post", "/predict", {"model": "m" * 129}),
    ("post", "/predict/batch", {"top_k": "99999999999999999999999"}),
    ("get", "/compare", {"repeats": "0"}),
    ("get", "/compare", {"repeats": "1001"}),
    ("get", "/compare", {"repeats": "many"}),
    ("get", "/compare", {"repeats": "NaN"}),
    ("get", "/compare", {"batch_size": "0"}),
    ("get", "/compare", {"batch_size": "257"}),
    ("get", "/compare", {"batch_size": "1000000000"}),
    ("get", "/compare", {"batch_size": "ten"}),
    ("get", "/compare", {"warmup": "-1"}),
    ("get", "/compare", {"warmup": "101"}),
    ("get", "/compare", {"models": "x" * 257}),
    ("post", "/compare", {"repeats": "-5"}),
]


@pytest.mark.parametrize(("method", "path", "params"), INVALID_QUERIES)
def test_out_of_range_parameters_are_422(
    client: TestClient, method: str, path: str, params: dict[str, str]
) -> None:
    started = time.perf_counter()
    if method == "post":
        response = client.post(path, params=params, content=REFERENCE, headers=PNG)
    else:
        response = client.get(path, params=params)
    message = assert_error(response, 422, "VALIDATION_ERROR")
    assert next(iter(params)) in message
    assert time.perf_counter() - started < 2.0  # refused before any comparison runs
    for value in params.values():
        if len(value) > 3:
            assert value not in message  # the client's input is not echoed back


def _multipart_with_filename(filename: bytes) -> bytes:
    return (
        b'--B\r\nContent-Disposition: form-data; name="file"; filename="'
        + filename
        + b'"\r\nContent-Type: image/png\r\n\r\n'
        + REFERENCE
        + b"\r\n--B--\r\n"
    )


@pytest.mark.parametrize(
    "filename",
    [
        b"\xff\xfe\x80not-utf8.png",
        "caf\u00e9 \u2603.png".encode(),
        b"../../../../etc/passwd",
        b"/etc/passwd",
        b"..\\..\\windows\\win.ini",
        b"<written>",
        b"a" * 2000 + b".png",
        b"",
    ],
)
def test_predict_upload_file_name_is_never_a_path(
    client: TestClient, tmp_path: Path, filename: bytes
) -> None:
    target = tmp_path / "written-by-the-service.png"
    filename = filename.replace(b"<written>", str(target).encode())
    response = client.post(
        "/predict",
        content=_multipart_with_filename(filename),
        headers={"content-type": "multipart/form-data; boundary=B"},
    )
    assert response.status_code == 200, response.text
    assert not target.exists()
    assert_clean(response.text)


def test_service_unchanged_after_hostile_inputs(
    client: TestClient, baseline: dict[str, Any]
) -> None:
    # Runs last in this module: everything above was thrown at the same app.
    assert_unchanged(client, baseline)
