"""``sepconv-bench``: the engine's own limit and the served throughput, measured in one run."""
