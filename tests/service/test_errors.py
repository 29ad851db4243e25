"""One factory per error code: every ``ApiError`` is built in ``service/errors.py``, each code has
one status, and every code the OpenAPI documents is one a factory can answer."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from service.api.openapi import ERRORS
from service.errors import (
    client_closed_request,
    empty_body,
    http_error,
    not_ready,
    runtime_unavailable,
    too_many_files,
)

SERVICE = Path(__file__).parents[2] / "service"
ERRORS_MODULE = SERVICE / "errors.py"
CODE = re.compile(r"\b[A-Z][A-Z_]{2,}[A-Z]\b")


def _constructions(source: Path) -> list[ast.Call]:
    calls = []
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name == "ApiError":
                calls.append(node)
    return calls


def _factory_codes() -> dict[str, set[int]]:
    """Each code ``service/errors.py`` spells, with the statuses it is built with."""
    pairs = [(call.args[0], call.args[1]) for call in _constructions(ERRORS_MODULE)]
    # Starlette's own HTTP errors take their code from a table, by status.
    for node in ast.walk(ast.parse(ERRORS_MODULE.read_text())):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
            if any(getattr(target, "id", None) == "_HTTP_CODES" for target in node.targets):
                pairs += [
                    (k, v) for k, v in zip(node.value.keys, node.value.values, strict=True) if k
                ]
    codes: dict[str, set[int]] = {}
    for status, code in pairs:
        if isinstance(code, ast.Constant) and isinstance(status, ast.Constant):
            if isinstance(code.value, str) and isinstance(status.value, int):
                codes.setdefault(code.value, set()).add(status.value)
    return codes


def test_no_module_but_errors_builds_an_api_error() -> None:
    inline = [
        f"{source.relative_to(SERVICE.parent)}:{call.lineno}"
        for source in sorted(SERVICE.rglob("*.py"))
        if source != ERRORS_MODULE
        for call in _constructions(source)
    ]
    assert inline == [], "use (or add) a factory in service/errors.py instead"


def test_each_error_code_has_one_status() -> None:
    codes = _factory_codes()
    assert {"NOT_READY", "OVERLOADED", "METHOD_NOT_ALLOWED", "RUNTIME_UNAVAILABLE"} <= set(codes)
    assert {code: statuses for code, statuses in codes.items() if len(statuses) > 1} == {}


def test_every_documented_code_has_a_factory() -> None:
    documented = {
        code for answer in ERRORS.values() for code in CODE.findall(answer["description"])
    }
    assert documented, "the OpenAPI descriptions name no code"
    assert documented - set(_factory_codes()) - {"HTTP_ERROR"} == set()


@pytest.mark.parametrize(
    ("status", "code"),
    [(404, "NOT_FOUND"), (405, "METHOD_NOT_ALLOWED"), (418, "HTTP_ERROR")],
)
def test_http_error_names_starlettes_statuses(status: int, code: str) -> None:
    error = http_error(status, "message", {"Allow": "POST"})
    assert (error.status_code, error.code, error.headers) == (status, code, {"Allow": "POST"})


def test_answers_both_paths_raise_keep_their_codes() -> None:
    # The route and the fast path raise these same factories for an empty body or a hang-up.
    assert (empty_body().status_code, empty_body().code) == (400, "MISSING_FILE")
    closed = client_closed_request()
    assert (closed.status_code, closed.code) == (499, "CLIENT_CLOSED_REQUEST")


def test_messages_say_how_to_fix() -> None:
    assert "/predict/batch" in too_many_files(1).message
    assert "sepconv-export-onnx" in runtime_unavailable("regular", "onnxruntime", "no file").message
    assert "sepconv-export-onnx" not in runtime_unavailable("regular", "tensorflow", "x").message
    assert not_ready("loading").headers == {"Retry-After": "1"}
