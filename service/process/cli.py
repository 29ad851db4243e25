"""``sepconv-serve`` and ``python -m service``: run the app under uvicorn with its settings.

Every flag overrides its ``SEPCONV_*`` variable. ``--help`` and ``--version`` answer, and a
port already taken is refused, before the serving runtime (TensorFlow, ~10 s) is imported.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

# TensorFlow reads these when it is imported, in this process and in the workers it spawns:
# C++ INFO and WARNING lines (oneDNN's banner among them) are start-up noise; errors stay.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if TYPE_CHECKING:
    from fastapi import FastAPI

    from service.process.settings import Settings

# uvicorn's exit status for a worker that could not start: its supervisor then stops instead of
# starting the same failure again and again.
STARTUP_FAILURE = 3
# The command's status when its socket cannot be opened (the port taken, an unknown host), and
# argparse's when a flag or a setting is invalid.
CANNOT_LISTEN = 1
INVALID_SETTINGS = 2
# Left in the metrics folder by a worker that could not build the app, so that the supervisor
# exits with STARTUP_FAILURE too rather than 0.
FAILED_MARKER = "worker-startup-failed"
# The flags, each the name of a Settings field (and so of a SEPCONV_<NAME> variable).
FLAGS = ("host", "port", "workers", "model_dir", "runtime", "log_level")

logger = logging.getLogger("sepconv.main")


def build_parser() -> argparse.ArgumentParser:
    """The command's options; each default shown is the setting's own."""
    from service.core.engines import RUNTIMES
    from service.process.settings import Settings

    fields = Settings.model_fields

    def default(name: str) -> str:
        field = fields[name]
        value = field.get_default(call_default_factory=True)
        return f"{value} (${_variable(name)})"

    parser = argparse.ArgumentParser(
        prog="sepconv-serve",
        description="Serve the CIFAR-10 classifiers in <model-dir>/<name>/<version>/ over HTTP. "
        "Every other setting is a SEPCONV_* environment variable (docs/configuration.md).",
    )
    parser.add_argument("--host", help=f"address to listen on; default {default('host')}")
    parser.add_argument("--port", type=int, help=f"port to listen on; default {default('port')}")
    parser.add_argument(
        "--workers",
        metavar="N|auto",
        help="server processes, each with its own models; auto = one per available CPU as "
        f"memory allows, one on a GPU; default {default('workers')}",
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        metavar="PATH",
        help=f"model repository; default {default('model_dir')}",
    )
    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        help=f"engine the models run on; default {default('runtime')}",
    )
    parser.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        help=f"least severe log line written; default {default('log_level')}",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    return parser


def read_settings(argv: Sequence[str] | None = None) -> Settings:
    """The settings of this start: the environment, with the flags given on top."""
    from pydantic import ValidationError

    from service.process.settings import Settings

    parser = build_parser()
    arguments = vars(parser.parse_args(argv))
    overrides = {name: arguments[name] for name in FLAGS if arguments[name] is not None}
    try:
        return Settings(**overrides)
    except ValidationError as error:
        problems = "; ".join(
            f"{_variable(str(e['loc'][0])) if e['loc'] else 'settings'}: {e['msg']}"
            for e in error.errors()
        )
        parser.error(f"invalid setting: {problems}")


def serve_main(argv: Sequence[str] | None = None) -> None:
    """Start uvicorn on ``--host:--port`` with ``--workers`` processes."""
    settings = read_settings(argv)

    from service.process.logs import configure_logging, logging_config

    configure_logging(settings.log_level)
    ensure_can_listen(settings.host, settings.port)
    settings = with_planned_workers(settings)

    import uvicorn

    # uvicorn drains in-flight requests on SIGTERM, then re-raises the signal to the handler
    # that was installed before it started; make that a clean exit (status 0), which is what
    # Docker and Kubernetes expect from a graceful stop.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # Every line in the service's JSON format, uvicorn's own included, in every worker.
    options = {**_uvicorn_options(settings), "log_config": logging_config(settings.log_level)}
    with _metrics_dir(settings.worker_processes) as folder:
        if settings.worker_processes == 1:
            from service.main import create_app

            try:
                import_runtime_quietly(settings.runtime)
            except ImportError as error:
                logger.error(
                    "the serving runtime cannot be imported",
                    extra={"runtime": settings.runtime, "reason": str(error)},
                )
                sys.exit(STARTUP_FAILURE)

            uvicorn.run(create_app(settings), **options)
            return
        # The workers are fresh interpreters that build their settings from the environment
        # (uvicorn imports worker_app by name): the flags reach them as the variables they
        # override, and the planned worker count as a number.
        for name in FLAGS:
            os.environ[_variable(name)] = str(getattr(settings, name))
        # The workers share one comparison slot, a lock file in this folder they all see.
        os.environ.setdefault("SEPCONV_COMPARE_LOCK_DIR", str(folder))
        # Several workers: the supervisor (uvicorn's, made safe for rollouts) spawns fresh
        # interpreters that each build the app from the same environment, forwards SIGTERM to
        # them and replaces one that dies. It never imports the app, and so neither TensorFlow.
        from service.process import fleet
        from service.process.supervisor import FleetSupervisor

        config = uvicorn.Config(
            "service.process.cli:worker_app",
            factory=True,
            workers=settings.worker_processes,
            # Also how long a worker may take to load its models when SIGHUP replaces it.
            timeout_worker_healthcheck=int(settings.worker_start_timeout_s),
            **options,
        )
        reports = fleet.fleet_folder(folder)
        assert reports is not None  # several workers always have a shared folder
        listener = config.bind_socket()
        try:
            FleetSupervisor(config, [listener], reports).run()
        finally:
            listener.close()
        if folder is not None and (folder / FAILED_MARKER).exists():
            sys.exit(STARTUP_FAILURE)


def with_planned_workers(settings: Settings) -> Settings:
    """``settings`` with ``workers`` a number (``auto`` resolved on this host), logged with why.

    Resolved once, here: the workers read the number from the environment, so they all agree
    on it and on their share of the CPUs, whatever the free memory does meanwhile.
    """
    from service.process.workers import host_plan

    plan = host_plan(settings.workers, settings.compare_runtime_list)
    planned = settings.model_copy(update={"workers": plan.workers})
    threads = planned.threads_per_worker
    logger.info(
        f"{plan.workers} worker{'s' if plan.workers != 1 else ''}, {threads} engine "
        f"thread{'s' if threads != 1 else ''} each: {plan.reason}",
        extra={**plan.log_fields(), "threads_per_worker": threads},
    )
    return planned


def ensure_can_listen(host: str, port: int) -> None:
    """Exit at once, with one line saying why, when ``host:port`` cannot be listened on.

    Checked before anything slow is imported, so a taken port is reported in well under a
    second rather than after TensorFlow has loaded. uvicorn binds the same way (SO_REUSEADDR),
    so a port this accepts, uvicorn accepts too.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as error:
        reason = error.strerror or str(error)
        logger.error(
            f"cannot listen on {host}:{port}: {reason.lower()}; stop whatever uses it or "
            "choose another with --port (SEPCONV_PORT) or --host (SEPCONV_HOST)"
        )
        sys.exit(CANNOT_LISTEN)


def import_runtime_quietly(runtime: str) -> None:
    """Import ``runtime`` (and let TensorFlow look for GPUs) without native start-up noise."""
    from service.core.engines import import_runtime
    from service.process.logs import native_noise_filtered

    with native_noise_filtered():
        import_runtime(runtime)
        if runtime == "tensorflow":
            # TensorFlow tries CUDA when it first lists devices; done here, inside the filter,
            # the lifespan finds them listed. Listing does not fix the thread pools, which the
            # lifespan still sets.
            import tensorflow as tf

            tf.config.list_physical_devices()


def _variable(name: str) -> str:
    return f"SEPCONV_{name.upper()}"


def _version() -> str:
    try:
        return metadata.version("sepconv-serve")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "unknown"


def worker_app() -> FastAPI:
    """The app of one worker process (uvicorn calls this in each of them)."""
    from service.process.logs import configure_logging
    from service.process.settings import get_settings

    settings = get_settings()
    configure_logging(settings.log_level)
    try:
        from service.main import create_app

        import_runtime_quietly(settings.runtime)
        return create_app(settings)
    except Exception:
        from service.process.metrics import MULTIPROCESS_DIR_ENV

        logger.exception("this worker cannot start")
        folder = os.environ.get(MULTIPROCESS_DIR_ENV)
        if folder:
            (Path(folder) / FAILED_MARKER).touch()
        sys.exit(STARTUP_FAILURE)


def _uvicorn_options(settings: Settings) -> dict[str, Any]:
    # Imported here, as everything else: the command starts before the HTTP stack is loaded.
    from service.edge.protocol import ConnectionLimits, protocol_class

    limits = ConnectionLimits(
        max_header_bytes=settings.max_header_bytes,
        max_head_bytes=settings.max_head_bytes,
        head_timeout_s=settings.head_timeout_s,
        max_connections=settings.connection_limit,
    )
    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "access_log": False,  # the service logs one structured line per request itself
        "timeout_graceful_shutdown": int(settings.graceful_timeout_s),
        # httptools, with caps and deadlines on request heads and a bound on connections;
        # a partial of a module-level class, so it pickles into the worker processes.
        "http": protocol_class(limits),
        "timeout_keep_alive": settings.keep_alive_s,
    }


@contextlib.contextmanager
def _metrics_dir(workers: int) -> Iterator[Path | None]:
    """The folder of prometheus-client's multiprocess mode, ready and empty, or None.

    prometheus-client reads ``PROMETHEUS_MULTIPROC_DIR`` when it is imported and then keeps
    every value in files there, whatever the worker count. A folder the operator named is
    created or emptied (old files would add a previous run's counts); with several workers and
    none named, one is made here, named in the environment the workers inherit, and removed
    afterwards.
    """
    from service.process import fleet
    from service.process.metrics import MULTIPROCESS_DIR_ENV

    given = os.environ.get(MULTIPROCESS_DIR_ENV)
    if given:
        folder = Path(given)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in [*folder.glob("*.db"), folder / FAILED_MARKER]:
            stale.unlink(missing_ok=True)
        # The workers' reports of an earlier run (service.process.fleet).
        shutil.rmtree(folder / fleet.FOLDER_NAME, ignore_errors=True)
        yield folder
        return
    if workers == 1:
        yield None
        return
    folder = Path(tempfile.mkdtemp(prefix="sepconv-metrics-"))
    os.environ[MULTIPROCESS_DIR_ENV] = str(folder)
    try:
        yield folder
    finally:
        del os.environ[MULTIPROCESS_DIR_ENV]
        shutil.rmtree(folder, ignore_errors=True)
