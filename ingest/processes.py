"""``callvault worker --processes N``: N worker processes of one consumer group, on one host.

One worker process is one Python interpreter: a pass-through worker is bound by its own CPU (base64
and JSON of the message, hashing, encryption, the S3 and catalog clients, faust) at about one core,
so a host with more cores runs more processes. They are exactly the replicas Compose or Kubernetes
would start (``deploy/``): ordinary ``callvault worker`` processes with the same settings, hence
members of the same consumer group, splitting the recordings topic's partitions between them.
Nothing is shared between them but Kafka and the catalog, so the promises of one worker hold across
them: an offset is committed only once its call is durably stored, a redelivery after a rebalance
or a crash is a ``duplicate``, and a call that killed a worker is counted in the catalog across
workers (``ingest.attempts``).

The supervisor (this module, in the parent process) starts the members, forwards SIGTERM and
SIGINT to them, and restarts a member that died (the out-of-memory killer) after a pause; its
partitions go to the others meanwhile. A member that dies of its start five times in a row (a bad
setting, a server it cannot reach) is not restarted again: the supervisor stops the others and
exits with that member's status, so the init system or the operator sees the failure. Each member gets its own faust web port and metrics port
(the configured ones + its index) so that they can share a host. More members than the recordings
topic has partitions would sit idle: refused.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

from core.errors import ConfigurationError

from .settings import IngestSettings, KafkaSettings

log = logging.getLogger("callvault.ingest")
RESTART_PAUSE_S = 2.0  # a member that dies at start (a bad setting) must not spin
QUICK_DEATH_S = 30.0   # a member gone this soon after its start died of its start, not of its work
MAX_QUICK_DEATHS = 5   # in a row: the cause will not go away by itself (a bad setting, a server down)


def member_env(index: int, settings: IngestSettings, base: dict[str, str]) -> dict[str, str]:
    """The environment of member ``index`` (0-based): one process, ports of its own."""
    env = dict(base, CALLVAULT_INGEST_PROCESSES="1")
    if settings.web_port:
        env["CALLVAULT_INGEST_WEB_PORT"] = str(settings.web_port + index)
    if settings.metrics_port:
        env["CALLVAULT_INGEST_METRICS_PORT"] = str(settings.metrics_port + index)
    return env


def check_processes(processes: int, kafka: KafkaSettings) -> None:
    if processes > kafka.partitions:
        raise ConfigurationError("CALLVAULT_INGEST_PROCESSES", (
            f"{processes} worker processes, but the recordings topic has {kafka.partitions} partitions "
            f"(CALLVAULT_KAFKA_PARTITIONS): the extra ones would sit idle; use at most {kafka.partitions}"))


@dataclass
class Supervisor:
    """The members of one host, kept running until SIGTERM or SIGINT."""

    processes: int
    command: list[str]  # a member's command line (a one-process ``callvault worker``)
    env_of: Callable[[int], dict[str, str]]
    restart_pause_s: float = RESTART_PAUSE_S
    quick_death_s: float = QUICK_DEATH_S
    max_quick_deaths: int = MAX_QUICK_DEATHS
    members: dict[int, subprocess.Popen] = field(default_factory=dict)
    stopping: bool = False
    failed: int = 0  # the exit status of a member given up on (non-zero), else 0
    _started: dict[int, float] = field(default_factory=dict)
    _quick_deaths: dict[int, int] = field(default_factory=dict)

    def start(self, index: int) -> None:
        self.members[index] = subprocess.Popen(self.command, env=self.env_of(index), stdin=subprocess.DEVNULL)
        self._started[index] = time.monotonic()
        log.info("worker process %d/%d started (pid %d)", index + 1, self.processes, self.members[index].pid)

    def _gave_up(self, index: int, proc: subprocess.Popen) -> bool:
        """Whether member ``index``, just exited, died of its start ``max_quick_deaths`` times in a
        row: then every member is stopped and the supervisor exits with that member's status."""
        quick = time.monotonic() - self._started[index] < self.quick_death_s
        self._quick_deaths[index] = self._quick_deaths.get(index, 0) + 1 if quick else 0
        if self._quick_deaths[index] < self.max_quick_deaths:
            return False
        log.error("worker process %d/%d exited %d times within %.0f s of its start (last status %s): not restarting "
                  "it; its output above says why (a setting, or a server it cannot reach); stopping the others",
                  index + 1, self.processes, self._quick_deaths[index], self.quick_death_s, proc.returncode)
        self.failed = proc.returncode or 1
        self.stop(signal.SIGTERM)
        return True

    def stop(self, signum: int, _frame: object = None) -> None:
        """Pass the signal on: each member commits what it finished and leaves the group."""
        self.stopping = True
        for proc in self.members.values():
            if proc.poll() is None:
                proc.send_signal(signum)

    def run(self) -> int:
        """Until ``stop``: the members' exit status once they are all gone (the highest), or the status
        of a member given up on (``_gave_up``)."""
        for index in range(self.processes):
            self.start(index)
        while not self.stopping:
            for index, proc in list(self.members.items()):
                if proc.poll() is not None and not self.stopping and not self._gave_up(index, proc):
                    log.warning("worker process %d/%d (pid %d) exited with %s: restarting it in %.0f s",
                                index + 1, self.processes, proc.pid, proc.returncode, self.restart_pause_s)
                    time.sleep(self.restart_pause_s)
                    if not self.stopping:
                        self.start(index)
            time.sleep(0.2)
        statuses = [proc.wait() for proc in self.members.values()]
        return self.failed or max(statuses, default=0)


def supervise(processes: int, loglevel: str, settings: IngestSettings, kafka: KafkaSettings) -> int:
    """``callvault worker --processes N`` with N > 1: run N one-process workers until interrupted."""
    check_processes(processes, kafka)
    command = [sys.executable, "-m", "callvault.cli", "worker", "--loglevel", loglevel, "--processes", "1"]
    supervisor = Supervisor(processes, command, lambda i: member_env(i, settings, dict(os.environ)))
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, supervisor.stop)
    return supervisor.run()
