from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sepconv_client.cli import main as client_main
from sepconv_client.client import AsyncSepconvClient, SepconvClient, SepconvError

from service.main import create_app
from service.process.settings import Settings
from tests.helpers.servers import live_server


def sample_image(colour: tuple[int, int, int] = (30, 140, 220)) -> Image.Image:
    return Image.new("RGB", (40, 40), colour)


@pytest.fixture(scope="module")
def app_client(exported_models: Path) -> Iterator[SepconvClient]:
    with TestClient(create_app(Settings(model_dir=exported_models))) as http:
        client = SepconvClient(http_client=http, max_retries=0)
        for _ in range(300):
            if client.health().ready:
                break
            time.sleep(0.1)
        yield client


@pytest.fixture(scope="module")
def server_url(exported_models: Path) -> Iterator[str]:
    with live_server(Settings(model_dir=exported_models)) as url:
        yield url


def test_client_predict_accepts_path_bytes_and_pil(
    app_client: SepconvClient, tmp_path: Path
) -> None:
    image = sample_image()
    path = tmp_path / "sample.png"
    image.save(path)
    from_pil = app_client.predict(image, top_k=5)
    from_path = app_client.predict(path, top_k=5)
    from_bytes = app_client.predict(path.read_bytes(), top_k=5)
    assert [p.model for p in from_pil.predictions] == ["regular", "separable"]
    assert len(from_pil.predictions[0].top_k) == 5
    for other in (from_path, from_bytes):
        for a, b in zip(from_pil.predictions, other.predictions, strict=True):
            assert a.label == b.label
            assert a.probabilities == pytest.approx(b.probabilities, abs=1e-6)


def test_client_predict_batch_and_models(app_client: SepconvClient) -> None:
    batch = app_client.predict_batch(
        [sample_image(), sample_image((250, 250, 0))], model="separable"
    )
    assert batch.count == 2 and all(len(r.predictions) == 1 for r in batch.results)
    models = app_client.models()
    assert {m.name: m.parameters for m in models} == {"regular": 1_186_378, "separable": 174_821}
    assert app_client.model("separable").macs_per_image == 18_295_808


def test_client_compare_and_health(app_client: SepconvClient) -> None:
    result = app_client.compare(sample_image(), repeats=3, warmup=0)
    assert result.input == "upload" and len(result.models) == 2
    assert app_client.compare(repeats=2, warmup=0, models=["separable"]).models[0].model == (
        "separable"
    )
    health = app_client.health()
    assert health.ready and set(health.models) == {"regular", "separable"}


def test_client_errors_raise_sepconv_error(app_client: SepconvClient) -> None:
    with pytest.raises(SepconvError) as caught:
        app_client.predict(b"not an image at all")
    assert caught.value.status_code == 400 and caught.value.code == "INVALID_IMAGE"
    assert caught.value.request_id
    with pytest.raises(SepconvError, match="MODEL_NOT_FOUND"):
        app_client.predict(sample_image(), model="mobilenet")


def test_client_retries_503_after_retry_after() -> None:
    calls: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(time.monotonic())
        if len(calls) < 3:
            return httpx.Response(
                503,
                headers={"Retry-After": "0.2"},
                json={"error": {"code": "OVERLOADED", "message": "busy", "request_id": "r"}},
            )
        return httpx.Response(200, json={"models": [], "count": 0})

    http = httpx.Client(base_url="http://sepconv.test", transport=httpx.MockTransport(handler))
    assert SepconvClient(http_client=http, max_retries=3).models() == []
    assert len(calls) == 3 and calls[1] - calls[0] >= 0.19

    calls.clear()
    with pytest.raises(SepconvError, match="OVERLOADED"):
        SepconvClient(http_client=http, max_retries=1).models()
    assert len(calls) == 2


def _breaks_then_answers(breaks: int, error: Exception) -> tuple[httpx.MockTransport, list[int]]:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) <= breaks:
            raise error
        return httpx.Response(200, json={"models": [], "count": 0})

    return httpx.MockTransport(handler), calls


def test_client_retries_a_connection_closed_without_an_answer() -> None:
    closed = httpx.RemoteProtocolError("Server disconnected without sending a response.")
    transport, calls = _breaks_then_answers(2, closed)
    http = httpx.Client(base_url="http://sepconv.test", transport=transport)
    assert SepconvClient(http_client=http, max_retries=2).models() == []
    assert len(calls) == 3

    transport, calls = _breaks_then_answers(2, closed)
    http = httpx.Client(base_url="http://sepconv.test", transport=transport)
    with pytest.raises(httpx.RemoteProtocolError):
        SepconvClient(http_client=http, max_retries=1).models()
    assert len(calls) == 2

    async def run() -> None:
        transport, calls = _breaks_then_answers(1, httpx.ReadError("connection reset"))
        http = httpx.AsyncClient(base_url="http://sepconv.test", transport=transport)
        assert await AsyncSepconvClient(http_client=http).models() == []
        assert len(calls) == 2

    asyncio.run(run())


def test_client_does_not_retry_a_refused_connection() -> None:
    transport, calls = _breaks_then_answers(1, httpx.ConnectError("connection refused"))
    http = httpx.Client(base_url="http://sepconv.test", transport=transport)
    with pytest.raises(httpx.ConnectError):
        SepconvClient(http_client=http, max_retries=3).models()
    assert len(calls) == 1


def test_client_against_real_uvicorn(server_url: str) -> None:
    with SepconvClient(server_url) as client:
        answer = client.predict(sample_image(), preview=True)
        assert answer.preview is not None and answer.preview.startswith("data:image/png;base64,")
        assert client.health().ready


def test_async_client_against_real_uvicorn(server_url: str) -> None:
    async def run() -> list[str]:
        async with AsyncSepconvClient(server_url) as client:
            answers = await asyncio.gather(
                *(client.predict(sample_image((i * 20, 0, 0))) for i in range(8))
            )
            models = await client.models()
            assert len(models) == 2
            return [a.predictions[1].label for a in answers]

    labels = asyncio.run(run())
    assert len(labels) == 8


def test_client_cli_predict_models_compare(
    server_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cat.png"
    sample_image().save(path)
    assert client_main(["--url", server_url, "predict", str(path)]) == 0
    out = capsys.readouterr().out
    assert "regular" in out and "separable" in out and " ms" in out
    assert client_main(["--url", server_url, "models"]) == 0
    assert "1,186,378" in capsys.readouterr().out
    assert client_main(["--url", server_url, "--json", "compare", "--repeats", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["fastest"] in ("regular", "separable")


def test_client_cli_reports_unreachable_service(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.helpers.servers import free_port

    assert client_main(["--url", f"http://127.0.0.1:{free_port()}", "models"]) == 1
    assert "cannot reach" in capsys.readouterr().err


def test_client_encode_pil_image_is_png() -> None:
    from sepconv_client.client import encode_image

    name, data, content_type = encode_image(sample_image())
    assert content_type == "image/png" and Image.open(io.BytesIO(data)).size == (40, 40)
    assert name == "image.png"
