"""``POST /predict``'s query, one specification three ways: the route's OpenAPI parameters, the
fast path's parser and the client's defaults all come from ``service.edge.queries`` (and so from
``sepconv_contract.limits``)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sepconv_client.client import AsyncSepconvClient, SepconvClient

from service.api.openapi import BATCH_BODY, ERRORS, IMAGE_BODY
from service.edge.queries import MODEL, PREDICT_PARAMETERS, PREVIEW, TOP_K
from service.main import create_app
from service.process.settings import Settings

CLIENT_PACKAGE = Path(__file__).parents[3] / "client" / "sepconv_client"


@pytest.fixture(scope="module")
def openapi(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    # No models needed: the schema is built from the routes alone.
    app = create_app(Settings(model_dir=tmp_path_factory.mktemp("no-models")))
    return app.openapi()


@pytest.fixture(scope="module")
def unready(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    """The app with no model and no lifespan: every valid /predict is a 503 NOT_READY."""
    app = create_app(Settings(model_dir=tmp_path_factory.mktemp("no-models")))
    return TestClient(app)


def _parameters(openapi: dict[str, Any], path: str) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in openapi["paths"][path]["post"]["parameters"]}


@pytest.mark.parametrize("path", ["/predict", "/predict/batch"])
def test_route_parameters_are_the_specification(openapi: dict[str, Any], path: str) -> None:
    parameters = _parameters(openapi, path)
    assert list(parameters) == [p.name for p in PREDICT_PARAMETERS]
    for spec in PREDICT_PARAMETERS:
        assert parameters[spec.name]["schema"]["default"] == spec.default
        assert parameters[spec.name]["description"] == spec.description
        assert parameters[spec.name]["required"] is False
    assert parameters[MODEL.name]["schema"]["maxLength"] == MODEL.max_length
    top_k = parameters[TOP_K.name]["schema"]
    assert (top_k["minimum"], top_k["maximum"]) == (TOP_K.minimum, TOP_K.maximum)
    assert parameters[PREVIEW.name]["schema"]["type"] == "boolean"


def test_route_bodies_and_errors_are_the_shared_fragments(openapi: dict[str, Any]) -> None:
    predict = openapi["paths"]["/predict"]["post"]
    batch = openapi["paths"]["/predict/batch"]["post"]
    assert set(predict["requestBody"]["content"]) == set(IMAGE_BODY["requestBody"]["content"])
    assert set(batch["requestBody"]["content"]) == set(BATCH_BODY["requestBody"]["content"])
    for operation in (predict, batch):
        for status, fragment in ERRORS.items():
            answer = operation["responses"][str(status)]
            assert answer["description"] == fragment["description"]
            schema = answer["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorResponse"}


@pytest.mark.parametrize(
    "query",
    [
        {TOP_K.name: TOP_K.minimum},
        {TOP_K.name: TOP_K.maximum},
        {TOP_K.name: TOP_K.minimum - 1},
        {TOP_K.name: TOP_K.maximum + 1},
        {MODEL.name: "m" * MODEL.max_length},
        {MODEL.name: "m" * (MODEL.max_length + 1)},
        {PREVIEW.name: "on"},
        {PREVIEW.name: "maybe"},
    ],
)
def test_fast_path_and_route_judge_bounds_alike(unready: TestClient, query: dict[str, Any]) -> None:
    # A raw body may be answered by the fast path; multipart always goes to the route. With no
    # model ready, an accepted query is a 503 (or a 404 for a name no registry holds) and a
    # refused one a 422, on either path.
    raw = unready.post(
        "/predict", params=query, content=b"x", headers={"Content-Type": "image/png"}
    )
    form = unready.post("/predict", params=query, files={"file": ("x.png", b"x", "image/png")})
    assert raw.status_code in (404, 422, 503)
    assert (raw.status_code, raw.json()["error"]["code"]) == (
        form.status_code,
        form.json()["error"]["code"],
    )


@pytest.mark.parametrize("client", [SepconvClient, AsyncSepconvClient])
def test_client_defaults_are_the_specification_defaults(
    client: type[SepconvClient] | type[AsyncSepconvClient],
) -> None:
    for method in (client.predict, client.predict_batch):
        defaults = inspect.signature(method).parameters
        assert defaults["model"].default == MODEL.default
        assert defaults["top_k"].default == TOP_K.default
    assert inspect.signature(client.predict).parameters["preview"].default == PREVIEW.default


def test_client_never_imports_the_service() -> None:
    # The client is its own distribution (httpx and pydantic, plus the contract).
    imported = set()
    for source in CLIENT_PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
    assert "service" not in imported
    assert "sepconv_contract" in imported
