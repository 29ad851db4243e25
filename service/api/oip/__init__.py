"""The Open Inference Protocol (KServe v2 REST, as Triton speaks it) under ``/v2``.

schemas (the protocol's bodies), codec (the binary tensor data framing), tensors (the image
input and the probabilities output), config (model metadata and Triton's configuration),
errors, and routes, whose ``router`` ``create_app`` includes.
"""

from service.api.oip.routes import router

__all__ = ["router"]
