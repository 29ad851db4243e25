"""The limits and defaults of the API's query parameters, shared by the service and the client.

They live in the contract, not in the service, because the client restates no number: it is a
distribution of its own (httpx and pydantic only) and may import this package, never
``service``. The service builds its one query specification (``service.edge.queries``) from
these, so the route, the fast path and the client cannot drift apart.
"""

from __future__ import annotations

# The ``model`` value that selects every ready model; also the default.
ALL_MODELS = "all"
# A longer ``model`` value is a 422, never a registry lookup.
MAX_MODEL_NAME = 128
# ``top_k``: how many classes each model's answer lists (CIFAR-10 has ten).
DEFAULT_TOP_K = 3
MIN_TOP_K = 1
MAX_TOP_K = 10
DEFAULT_PREVIEW = False
