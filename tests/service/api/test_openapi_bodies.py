"""The request bodies ``/openapi.json`` documents match what the routes enforce."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from service.process.settings import Settings
from tests.helpers.images import image_bytes


def batch_files_schema(client: TestClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    body = response.json()["paths"]["/predict/batch"]["post"]["requestBody"]
    schema: dict[str, Any] = body["content"]["multipart/form-data"]["schema"]
    assert schema["required"] == ["files"]
    files: dict[str, Any] = schema["properties"]["files"]
    return files


def test_batch_files_document_their_bounds(client: TestClient) -> None:
    files = batch_files_schema(client)

    assert files["type"] == "array"
    assert files["items"] == {"type": "string", "format": "binary"}
    assert files["minItems"] == 1
    assert files["maxItems"] == Settings.model_fields["max_batch_files"].default == 64
    assert "SEPCONV_MAX_BATCH_FILES" in files["description"]


def test_batch_bounds_are_the_ones_the_default_service_enforces(client: TestClient) -> None:
    files = batch_files_schema(client)
    image = image_bytes()

    def post(count: int) -> Any:
        uploads = [("files", (f"{i}.png", image, "image/png")) for i in range(count)]
        # One other file field, so an empty batch is still a multipart body.
        return client.post("/predict/batch", files=uploads or [("other", ("x", b"x", "x/y"))])

    too_many = post(files["maxItems"] + 1)
    none = post(files["minItems"] - 1)

    assert (too_many.status_code, too_many.json()["error"]["code"]) == (400, "TOO_MANY_FILES")
    assert (none.status_code, none.json()["error"]["code"]) == (400, "MISSING_FILE")
