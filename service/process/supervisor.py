"""The supervisor of several workers: uvicorn's, made safe for rollouts.

uvicorn's ``Multiprocess`` restarts a worker that dies and replaces them all on SIGHUP, each
replacement started before the worker it retires. Three things it cannot know are added here:

- A replacement counts as started only when every model it was asked for loaded: a worker whose
  models fail exits before it takes a connection (``fleet.MODELS_NOT_READY``), and the supervisor
  logs why from its report. SIGHUP then stops the rollout and the old workers keep serving; a
  respawn is retried with a growing delay while the other workers serve.
- A respawned worker loads the versions the others serve (pinned through its environment), so
  a newer folder copied in meanwhile does not give a mixed fleet; only SIGHUP moves versions,
  and every replacement of one rollout loads the versions its first replacement took.
- SIGTERM closes the supervisor's listening socket at once. The workers close theirs when they
  begin to drain; the supervisor's copy would otherwise keep the port accepting connections
  into a backlog nobody reads until the last worker had exited.
"""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

from uvicorn.config import STARTUP_FAILURE, Config
from uvicorn.supervisors.multiprocess import Multiprocess, Process

from service.process import fleet

logger = logging.getLogger("sepconv.main")

# Delays before respawning a worker whose models keep failing: 1, 2, 4, ... up to a minute.
FIRST_RETRY_S = 1.0
LONGEST_RETRY_S = 60.0


class FleetSupervisor(Multiprocess):
    def __init__(self, config: Config, sockets: list[socket.socket], reports: Path) -> None:
        super().__init__(config, sockets)
        self.reports = reports
        # Slot -> when its next respawn may start, and how many in a row have failed.
        self._retry_at: dict[int, float] = {}
        self._failures: dict[int, int] = {}

    # -- starting workers ---------------------------------------------------------------------

    def _start(self, pins: dict[str, int] | None) -> Process:
        """A replacement worker, started, that loads ``pins`` (None: the newest versions)."""
        with fleet.worker_environment(fleet.REPLACEMENT, pins):
            process = Process(self.config, self.sockets)
            process.start()
        return process

    def _fleet_versions(self, fallback: fleet.WorkerReport | None) -> dict[str, int]:
        """The versions the running workers serve (the first one's, should they differ)."""
        reports = fleet.live_reports(self.reports)
        if reports:
            return reports[0].versions
        return fallback.versions if fallback is not None else {}

    def _forget(self, process: Process) -> fleet.WorkerReport | None:
        """The report of a worker that has exited, removed from the shared folder."""
        report = fleet.read_report(self.reports, process.pid) if process.pid else None
        fleet.remove_report(self.reports, process.pid)
        return report

    # -- respawns -----------------------------------------------------------------------------

    def keep_subprocess_alive(self) -> None:
        if self.should_exit.is_set():
            return
        for slot, process in enumerate(self.processes):
            if slot in self._retry_at:
                if time.monotonic() >= self._retry_at[slot]:
                    del self._retry_at[slot]
                    self.processes[slot] = self._start(self._fleet_versions(None))
                continue
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                if slot in self._failures and process.is_ready(timeout=1):
                    del self._failures[slot]
                continue
            process.kill()  # hung or gone: make sure it is gone
            process.join()
            report = self._forget(process)
            if process.exitcode == STARTUP_FAILURE:
                # The code or the runtime cannot start (an import failed): every worker would
                # fail the same way, so the server stops, as uvicorn's own supervisor does.
                logger.error(
                    "a worker cannot start; stopping the server",
                    extra={"pid": process.pid, "exit_status": process.exitcode},
                )
                self.should_exit.set()
                return
            if self.should_exit.is_set():
                return
            if process.exitcode == fleet.MODELS_NOT_READY:
                failures = self._failures.get(slot, 0) + 1
                self._failures[slot] = failures
                delay = min(LONGEST_RETRY_S, FIRST_RETRY_S * 2 ** (failures - 1))
                self._retry_at[slot] = time.monotonic() + delay
                logger.error(
                    f"a replacement worker's models did not load; the other workers keep "
                    f"serving, retrying in {delay:g} s",
                    extra={
                        "pid": process.pid,
                        "reason": report.summary() if report else "no report",
                        "attempt": failures,
                    },
                )
                continue
            pins = self._fleet_versions(report)
            logger.warning(
                "a worker stopped; starting a replacement on the versions the others serve",
                extra={"pid": process.pid, "exit_status": process.exitcode, "versions": pins},
            )
            self.processes[slot] = self._start(pins)

    # -- SIGHUP -------------------------------------------------------------------------------

    def restart_all(self) -> None:
        """Replace each worker by one on the newest complete versions, new before old; stop at
        the first replacement that does not become ready and keep the rest serving."""
        pins: dict[str, int] | None = None
        for slot, old in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            new = self._start(pins)
            timeout = self.config.timeout_worker_healthcheck
            if not new.wait_until_ready(timeout, self.should_exit):
                new.kill()
                new.join()
                report = self._forget(new)
                if not self.should_exit.is_set():
                    reason = (
                        report.summary()
                        if report is not None and not report.ready
                        else f"not ready within {timeout} s"
                    )
                    logger.error(
                        "rollout stopped: a new worker could not serve; the old workers keep "
                        "serving",
                        extra={"pid": new.pid, "reason": reason, "replaced": slot},
                    )
                return
            if pins is None:
                report = fleet.read_report(self.reports, new.pid) if new.pid else None
                pins = report.versions if report is not None else {}
            self._retry_at.pop(slot, None)
            self._failures.pop(slot, None)
            old.terminate()
            old.join()
            self._forget(old)
            self.processes[slot] = new
        logger.info("rollout complete", extra={"versions": pins or {}})

    # -- stopping -----------------------------------------------------------------------------

    def _stop_listening(self) -> None:
        for listener in self.sockets:
            listener.close()

    def handle_term(self) -> None:
        self._stop_listening()
        super().handle_term()

    def handle_int(self) -> None:
        self._stop_listening()
        super().handle_int()
