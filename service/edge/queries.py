"""The query of ``POST /predict``, specified once: each parameter's name, default and bounds.

Two readers are built from it: the route's ``Query()`` aliases (``service.api.predict``) and the
fast path's parser (``service.edge.fast_path``), so both paths accept and refuse the same
requests. The numbers themselves come from the contract (``sepconv_contract.limits``), which
the client reads too.

It lives at the edge, not in ``service.api``: the edge is the lower layer (routers already
import it for uploads), and the fast path must not depend on a router module. For the same
reason it imports no FastAPI; the route turns each parameter into a ``Query()`` itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from sepconv_contract.limits import (
    ALL_MODELS,
    DEFAULT_PREVIEW,
    DEFAULT_TOP_K,
    MAX_MODEL_NAME,
    MAX_TOP_K,
    MIN_TOP_K,
)
from service.core.engines import RUNTIMES

# The boolean spellings the fast path reads itself. Pydantic reads each the same way and
# accepts a few more ("t", "y", ...), which the fast path leaves to it.
TRUE_SPELLINGS = frozenset({"true", "1", "yes", "on"})
FALSE_SPELLINGS = frozenset({"false", "0", "no", "off"})
Value = TypeVar("Value", str, int, bool)


@dataclass(frozen=True)
class Parameter(Generic[Value]):
    """One query parameter: absent means its default; a value it cannot read unambiguously is
    left to FastAPI (None), which then answers it, 422 included."""

    name: str
    default: Value
    description: str

    def read(self, text: str | None) -> Value | None:
        """The value of ``text`` (the default when absent), or None to leave it to FastAPI."""
        return self.default if text is None else self.parse(text)

    def parse(self, text: str) -> Value | None:
        raise NotImplementedError


@dataclass(frozen=True)
class TextParameter(Parameter[str]):
    max_length: int = MAX_MODEL_NAME

    def parse(self, text: str) -> str | None:
        return text if 0 < len(text) <= self.max_length else None


@dataclass(frozen=True)
class IntegerParameter(Parameter[int]):
    minimum: int = 0
    maximum: int = 0

    def parse(self, text: str) -> int | None:
        # No more digits than the maximum has: "03" is 3 for both paths, and int() of
        # thousands of digits is slow enough to raise.
        if not (text.isascii() and text.isdigit() and len(text) <= len(str(self.maximum))):
            return None
        value = int(text)
        return value if self.minimum <= value <= self.maximum else None


@dataclass(frozen=True)
class FlagParameter(Parameter[bool]):
    def parse(self, text: str) -> bool | None:
        spelling = text.lower()
        if spelling in TRUE_SPELLINGS:
            return True
        return False if spelling in FALSE_SPELLINGS else None


@dataclass(frozen=True)
class ChoiceParameter(Parameter[str]):
    """One of a fixed set of names; the empty default means the service's own choice."""

    choices: tuple[str, ...] = ()

    def parse(self, text: str) -> str | None:
        return text if text in self.choices else None

    @property
    def pattern(self) -> str:
        """The route's validation of the same set: anything else is 422."""
        return "^(" + "|".join(sorted(self.choices, key=len, reverse=True)) + ")$"


MODEL = TextParameter("model", ALL_MODELS, "A model name, or 'all'", max_length=MAX_MODEL_NAME)
TOP_K = IntegerParameter(
    "top_k", DEFAULT_TOP_K, "How many top classes to list", minimum=MIN_TOP_K, maximum=MAX_TOP_K
)
PREVIEW = FlagParameter("preview", DEFAULT_PREVIEW, "Include the 32x32 input as a PNG data URL")
RUNTIME = ChoiceParameter(
    "runtime",
    "",
    "A runtime loaded at start-up (SEPCONV_RUNTIME, or one of SEPCONV_COMPARE_RUNTIMES) to "
    "answer on: " + ", ".join(RUNTIMES) + "; default: the service's runtime. One not loaded, "
    "or whose artifact failed to load for a model, is 409 RUNTIME_UNAVAILABLE",
    choices=RUNTIMES,
)
PREDICT_PARAMETERS = (MODEL, TOP_K, PREVIEW, RUNTIME)


@dataclass(frozen=True)
class PredictQuery:
    """One request's values of the parameters above, however they were parsed."""

    model: str = MODEL.default
    top_k: int = TOP_K.default
    preview: bool = PREVIEW.default
    runtime: str = RUNTIME.default  # "": the service's runtime
