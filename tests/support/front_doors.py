"""The front doors as telephony reaches them: a real `callvault api` process, driven with the
real `curl`, and the real AWS CLI against MinIO. Nothing here speaks HTTP or S3 itself."""

from __future__ import annotations

import json
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
class Reply:
    status: int
    body: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class ApiProcess:
    """`callvault api` on a free port with the given environment."""

    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen([sys.executable, "-m", "callvault.cli", "api", "--host", "127.0.0.1",
                                         "--port", str(self.port)], env=self.env, stdout=log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
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


@dataclass
class FrontDoors:
    """What the ``front_doors`` fixture gives: the pipeline, the API process, tokens by user."""

    pipeline: object
    api: ApiProcess
    tokens: dict[str, str]

    def status(self, recording_id: str, *, user: str = "pbx-acme", tenant: str = "acme") -> Reply:
        return curl("-H", f"Authorization: Bearer {self.tokens[user]}",
                    f"{self.api.url}/v1/recordings/{recording_id}/status?tenant={tenant}")

    def wait_status(self, recording_id: str, *states: str, timeout: float = 90.0) -> dict:
        """Poll the status URL (with curl) until the call is in one of ``states``."""
        deadline, last = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            last = self.status(recording_id)
            if last.status == 200 and last.json["status"] in states:
                return last.json
            time.sleep(0.5)
        raise AssertionError(f"{recording_id}: last status {last}; worker log:\n{self.pipeline.worker_log()}\n"
                             f"api log:\n{self.api.log()}")


def curl(*args: str, timeout: float = 60.0) -> Reply:
    """Run the real curl; the reply's status and body (``-w`` appends the status on a last line)."""
    done = subprocess.run(["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", *args], capture_output=True,
                          timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"curl failed ({done.returncode}): {done.stderr.decode(errors='replace')}")
    body, _, status = done.stdout.rpartition(b"\n")
    return Reply(int(status), body)


def push_headers(token: str, *, recording_id: str, started_at: str, agent: str = "agent-7",
                 number: str | None = None, content_type: str = "audio/wav", **more: str) -> list[str]:
    """curl's ``-H`` arguments of a push, as a PBX's dialplan line writes them."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type,
               "Callvault-Recording-Id": recording_id, "Callvault-Started-At": started_at,
               "Callvault-Agent-Id": agent, **({"Callvault-Caller-Number": number} if number else {}),
               **{f"Callvault-{k.replace('_', '-').title()}": v for k, v in more.items()}}
    return [arg for name, value in headers.items() for arg in ("-H", f"{name}: {value}")]


def aws(*args: str, env: dict[str, str], timeout: float = 120.0) -> subprocess.CompletedProcess:
    """The real AWS CLI (``awscli`` from the test extra), next to this Python, against MinIO."""
    cli = Path(sys.executable).with_name("aws")
    done = subprocess.run([str(cli), *args], env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"aws {' '.join(args)} failed ({done.returncode}): {done.stderr}")
    return done


def aws_env(endpoint: str, access_key: str, secret_key: str, region: str, home: Path) -> dict[str, str]:
    """What a telephony system's shell would set for the AWS CLI to reach MinIO."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, "AWS_ACCESS_KEY_ID": access_key,
            "AWS_SECRET_ACCESS_KEY": secret_key, "AWS_DEFAULT_REGION": region, "AWS_ENDPOINT_URL": endpoint,
            "AWS_CONFIG_FILE": str(home / "aws-config"), "AWS_SHARED_CREDENTIALS_FILE": str(home / "aws-creds"),
            "AWS_EC2_METADATA_DISABLED": "true"}
