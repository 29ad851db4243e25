"""The server process: settings, shared state, logs, metrics and the ``sepconv-serve`` command."""
