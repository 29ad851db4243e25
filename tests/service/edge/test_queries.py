"""The one query specification of ``POST /predict``: the fast path's parser reads its bounds,
its defaults and its boolean spellings, and they are the contract's numbers."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from sepconv_contract import limits
from service.edge.fast_path import PredictQuery, parse_query
from service.edge.queries import FALSE_SPELLINGS, MODEL, PREVIEW, TOP_K, TRUE_SPELLINGS


def test_queries_are_built_from_the_contract_limits() -> None:
    assert (MODEL.default, MODEL.max_length) == (limits.ALL_MODELS, limits.MAX_MODEL_NAME)
    assert (TOP_K.default, TOP_K.minimum, TOP_K.maximum) == (
        limits.DEFAULT_TOP_K,
        limits.MIN_TOP_K,
        limits.MAX_TOP_K,
    )
    assert PREVIEW.default == limits.DEFAULT_PREVIEW


def test_parse_query_defaults_are_the_specification_defaults() -> None:
    assert parse_query(b"") == PredictQuery(MODEL.default, TOP_K.default, PREVIEW.default)
    assert PredictQuery() == PredictQuery(MODEL.default, TOP_K.default, PREVIEW.default)


def test_parse_query_takes_top_k_up_to_the_specified_bounds() -> None:
    for top_k in (TOP_K.minimum, TOP_K.maximum):
        parsed = parse_query(f"top_k={top_k}".encode())
        assert parsed is not None and parsed.top_k == top_k
    assert parse_query(f"top_k={TOP_K.minimum - 1}".encode()) is None
    assert parse_query(f"top_k={TOP_K.maximum + 1}".encode()) is None


def test_parse_query_takes_model_names_up_to_the_specified_length() -> None:
    longest = "m" * MODEL.max_length
    parsed = parse_query(f"model={longest}".encode())
    assert parsed is not None and parsed.model == longest
    assert parse_query(f"model={longest}m".encode()) is None


@pytest.mark.parametrize("spelling", sorted(TRUE_SPELLINGS | FALSE_SPELLINGS))
def test_preview_spellings_read_as_pydantic_reads_them(spelling: str) -> None:
    # The route's bool is read by pydantic: each spelling the fast path takes must mean the
    # same there, in any case.
    for text in (spelling, spelling.upper()):
        expected = TypeAdapter(bool).validate_python(text)
        assert PREVIEW.read(text) is expected
        parsed = parse_query(f"preview={text}".encode())
        assert parsed is not None and parsed.preview is expected


@pytest.mark.parametrize("text", ["", "maybe", "2", "truthy"])
def test_preview_spellings_pydantic_refuses_are_left_to_fastapi(text: str) -> None:
    with pytest.raises(ValidationError):
        TypeAdapter(bool).validate_python(text)
    assert PREVIEW.read(text) is None
