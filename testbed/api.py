"""``callvault api`` as its own process on a free loopback port: the API exactly as it is deployed
(its CLI, its uvicorn, its settings from the environment), for the front-door tests and the
playback benchmarks. (In-process, a test serves an app it built itself: ``tests.support.server``.)"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ApiProcess:
    """`callvault api` on a free port with the given environment; ``with ApiProcess(...) as api:``
    starts it and waits for ``/healthz``, and stops it after."""

    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    cwd: Path | None = None  # another tree of callvault to run (a benchmark's "before"), else this one
    args: tuple[str, ...] = ()  # more options of `callvault api` (e.g. ("--workers", "2"))
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen([sys.executable, "-m", "callvault.cli", "api", "--host", "127.0.0.1",
                                         "--port", str(self.port), *self.args], env=self.env, stdout=log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                        cwd=self.cwd)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"callvault api exited:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"callvault api did not answer:\n{self.log()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def __enter__(self) -> "ApiProcess":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
