"""The HTTP edge: what every request passes through before the API routers (request ids, body
limits, the raw-body fast path, reading uploads, the error envelope)."""
