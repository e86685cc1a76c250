"""The front doors as telephony reaches them: a real `callvault api` process (``testbed.api``),
driven with the real `curl`, and the real AWS CLI against MinIO. Nothing here speaks HTTP or S3
itself."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from pydantic import SecretStr

from access.identities import add_user
from access.settings import AccessSettings
from access.tokens import issue_token
from storage.catalog import tables as t
from testbed.api import ApiProcess
from testbed.pipeline import Pipeline


@dataclass
class Reply:
    status: int
    body: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class FrontDoors:
    """What the ``front_doors`` fixture gives: the pipeline, the API process, tokens by user."""

    pipeline: Pipeline
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


# The API's settings on top of the pipeline's: its JWT secret, and pushes of up to 6 MiB.
def api_env() -> dict[str, str]:
    return {"CALLVAULT_ACCESS_JWT_SECRET": secrets.token_urlsafe(32),
            "CALLVAULT_INGEST_MAX_AUDIO_BYTES": str(6 * 1024 * 1024)}


@contextmanager
def front_doors_on(pipe: Pipeline, log_path: Path) -> Iterator[FrontDoors]:
    """A real `callvault api` on ``pipe`` (whose environment has ``api_env()``), a telephony user
    of `acme` (``pbx-acme``), an internal-control user of `acme` (``ic-acme``), and the tenant
    `globex` nobody here serves."""
    now = datetime.now(timezone.utc)
    with pipe.engine.begin() as conn:
        conn.execute(t.tenants.insert().values(id="globex", name="Globex", created_at=now))
        add_user(conn, user_id="pbx-acme", role="telephony", tenants=["acme"], now=now)
        add_user(conn, user_id="ic-acme", role="internal-control", tenants=["acme"], now=now)
    settings = AccessSettings(jwt_secret=SecretStr(pipe.env["CALLVAULT_ACCESS_JWT_SECRET"]))
    with ApiProcess(pipe.env, log_path) as api:
        yield FrontDoors(pipe, api, {u: issue_token(u, settings) for u in ("pbx-acme", "ic-acme")})


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
