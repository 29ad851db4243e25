from __future__ import annotations

import argparse
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
from sepconv_client.calls import encode_image, image_type
from sepconv_client.cli import build_parser, format_compare
from sepconv_client.cli import main as client_main
from sepconv_client.client import AsyncSepconvClient, SepconvClient, SepconvError

from sepconv_contract.schemas import CompareResponse
from service.main import create_app
from service.process.settings import Settings
from tests.helpers.servers import live_server

MODELS = ["regular", "separable"]


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


def test_client_cli_options_anywhere_and_one_json_document(
    server_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = tmp_path / "a.png", tmp_path / "b.jpg"
    sample_image().save(first)
    sample_image((200, 10, 10)).save(second, format="JPEG")
    # The shared options after the subcommand, as well as before it.
    assert client_main(["models", "--json", "--url", server_url]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["count"] == 2 and [m["name"] for m in listed["models"]] == MODELS
    assert client_main(["--json", "predict", "--url", server_url, str(first), str(second)]) == 0
    answer = json.loads(capsys.readouterr().out)  # one document for both images
    assert answer["count"] == 2
    assert [r["file"] for r in answer["results"]] == [str(first), str(second)]
    assert [r["image"]["format"] for r in answer["results"]] == ["PNG", "JPEG"]
    assert client_main(["batch", str(first), str(second), "--json", "--url", server_url]) == 0
    batch = json.loads(capsys.readouterr().out)
    assert batch["count"] == 2 and [r["file"] for r in batch["results"]] == [
        str(first),
        str(second),
    ]
    assert all(len(r["predictions"]) == 2 for r in batch["results"])


def test_client_cli_reads_sepconv_url(
    server_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SEPCONV_URL", server_url)
    assert client_main(["models"]) == 0
    assert "separable" in capsys.readouterr().out
    with SepconvClient() as client:
        assert client.health().ready


def test_client_cli_agreement_only_with_several_models(
    server_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "one.png"
    sample_image().save(path)
    assert client_main(["--url", server_url, "predict", str(path), "--model", "separable"]) == 0
    one = capsys.readouterr().out
    assert "separable" in one and "regular" not in one
    assert "models agree" not in one and "models DISAGREE" not in one
    assert client_main(["--url", server_url, "predict", str(path)]) == 0
    both = capsys.readouterr().out
    assert "models agree" in both or "models DISAGREE" in both


def test_client_cli_names_the_image_that_failed(
    server_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    sample_image().save(good)
    bad.write_bytes(b"not an image at all")
    assert client_main(["--url", server_url, "--json", "predict", str(bad), str(good)]) == 1
    answer = json.loads(capsys.readouterr().out)
    failed, answered = answer["results"]
    assert failed == {
        "file": str(bad),
        "error": {"status": 400, "code": "INVALID_IMAGE", "message": failed["error"]["message"]},
    }
    assert answered["file"] == str(good) and len(answered["predictions"]) == 2


def test_client_cli_help_shows_every_default() -> None:
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(commands.choices) == {"predict", "batch", "models", "compare"}
    for command in [parser, *commands.choices.values()]:
        options = [a for a in command._actions if a.option_strings and a.dest != "help"]
        assert options
        for option in options:
            assert option.help and "(default" in option.help, option.option_strings


def test_client_predict_sends_the_raw_body(server_url: str) -> None:
    # The fast path takes an image body as it is; the client never wraps one image in multipart.
    sent: list[httpx.Request] = []
    http = httpx.Client(base_url=server_url, event_hooks={"request": [sent.append]})
    with SepconvClient(http_client=http) as client:
        answer = client.predict(sample_image(), model="regular", top_k=2)
    http.close()
    assert [p.model for p in answer.predictions] == ["regular"]
    (request,) = sent
    assert request.headers["content-type"] == "image/png"
    assert request.content.startswith(b"\x89PNG")


def test_client_image_type_from_signature(tmp_path: Path) -> None:
    for format, media in (
        ("PNG", "image/png"),
        ("JPEG", "image/jpeg"),
        ("GIF", "image/gif"),
        ("BMP", "image/bmp"),
        ("WEBP", "image/webp"),
        ("TIFF", "image/tiff"),
    ):
        buffer = io.BytesIO()
        sample_image().save(buffer, format=format)
        assert image_type(buffer.getvalue()) == media
    assert image_type(b"plain text") == "application/octet-stream"
    path = tmp_path / "no-suffix"
    sample_image().save(path, format="PNG")
    assert encode_image(path) == ("no-suffix", path.read_bytes(), "image/png")


def test_client_cli_reports_unreachable_service(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.helpers.servers import free_port

    assert client_main(["--url", f"http://127.0.0.1:{free_port()}", "models"]) == 1
    assert "cannot reach" in capsys.readouterr().err


def test_client_encode_pil_image_is_png() -> None:
    name, data, content_type = encode_image(sample_image())
    assert content_type == "image/png" and Image.open(io.BytesIO(data)).size == (40, 40)
    assert name == "image.png"


def test_client_compare_text_says_what_separable_buys_on_each_runtime() -> None:
    from service.api.compare_example import compare_example

    result = CompareResponse.model_validate(compare_example())
    assert result.matrix is not None and len(result.matrix.separable_speedups) == 2

    text = format_compare(result)

    for row in result.matrix.separable_speedups:
        assert row.speedup is not None and row.mac_ratio is not None
        assert (
            f"on {row.runtime}: separable is {row.speedup:.2f}x faster than regular at p50 of "
            f"the {row.mac_ratio:.2f}x the multiply-adds allow" in text
        )
    assert "regular (onnxruntime-int8)" in text
