"""The serving core, free of HTTP: decoding images, the model registry and engines, micro-
batching, inference and the latency comparison."""
