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

from sepconv_contract.limits import (
    ALL_MODELS,
    DEFAULT_PREVIEW,
    DEFAULT_TOP_K,
    MAX_MODEL_NAME,
    MAX_TOP_K,
    MIN_TOP_K,
)

# The boolean spellings the fast path reads itself. Pydantic reads each the same way and
# accepts a few more ("t", "y", ...), which the fast path leaves to it.
TRUE_SPELLINGS = frozenset({"true", "1", "yes", "on"})
FALSE_SPELLINGS = frozenset({"false", "0", "no", "off"})


@dataclass(frozen=True)
class TextParameter:
    name: str
    default: str
    max_length: int
    description: str

    def read(self, text: str | None) -> str | None:
        """The value of ``text`` (the default when absent), or None to leave it to FastAPI."""
        if text is None:
            return self.default
        return text if 0 < len(text) <= self.max_length else None


@dataclass(frozen=True)
class IntegerParameter:
    name: str
    default: int
    minimum: int
    maximum: int
    description: str

    def read(self, text: str | None) -> int | None:
        """The value of ``text`` (the default when absent), or None to leave it to FastAPI."""
        if text is None:
            return self.default
        # No more digits than the maximum has: "03" is 3 for both paths, and int() of
        # thousands of digits is slow enough to raise.
        if not (text.isascii() and text.isdigit() and len(text) <= len(str(self.maximum))):
            return None
        value = int(text)
        return value if self.minimum <= value <= self.maximum else None


@dataclass(frozen=True)
class FlagParameter:
    name: str
    default: bool
    description: str

    def read(self, text: str | None) -> bool | None:
        """The value of ``text`` (the default when absent), or None to leave it to FastAPI."""
        if text is None:
            return self.default
        spelling = text.lower()
        if spelling in TRUE_SPELLINGS:
            return True
        return False if spelling in FALSE_SPELLINGS else None


MODEL = TextParameter("model", ALL_MODELS, MAX_MODEL_NAME, "A model name, or 'all'")
TOP_K = IntegerParameter(
    "top_k", DEFAULT_TOP_K, MIN_TOP_K, MAX_TOP_K, "How many top classes to list"
)
PREVIEW = FlagParameter("preview", DEFAULT_PREVIEW, "Include the 32x32 input as a PNG data URL")
PREDICT_PARAMETERS = (MODEL, TOP_K, PREVIEW)
