"""A server that does not answer, or a setting pointing at nothing, is one line and exit 1 (README,
"When a command fails"): found by driving the CLI at a wrong port as a new operator would."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.support.cli import CliWorld, cli_world

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def world(minio, ledger_bucket, postgres_url, kafka_bootstrap, tmp_path_factory) -> Iterator[CliWorld]:
    with cli_world(minio, ledger_bucket, postgres_url, kafka_bootstrap, tmp_path_factory.mktemp("cli")) as w:
        yield w


def one_line(world: CliWorld, env: dict[str, str], *args: str) -> str:
    result = type(world.cli)({**world.cli.env, **env})(*args)
    shown = f"$ callvault {' '.join(args)} with {env}\n{result.output}"
    assert isinstance(result.exception, SystemExit) and result.exit_code == 1, f"{shown}\n{result.exception!r}"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), shown
    assert "Traceback" not in result.output and "╭" not in result.output, shown
    return lines[0]


@pytest.mark.parametrize("args", [("audit", "verify"), ("recordings", "list", "--actor", "ic-1"),
                                  ("tenants", "add", "newco")])
def test_a_catalog_that_does_not_answer(world, args) -> None:
    line = one_line(world, {"CALLVAULT_CATALOG_URL": "postgresql+psycopg://cv:secret@127.0.0.1:1/callvault"}, *args)
    assert "CALLVAULT_CATALOG_URL" in line and "127.0.0.1:1" in line and "secret" not in line


def test_a_catalog_not_migrated_yet(world, tmp_path: Path) -> None:
    line = one_line(world, {"CALLVAULT_CATALOG_URL": f"sqlite:///{tmp_path / 'new.sqlite3'}"}, "audit", "verify")
    assert "storage init" in line


def test_a_catalog_url_that_is_no_url(world) -> None:
    line = one_line(world, {"CALLVAULT_CATALOG_URL": "notaurl"}, "audit", "verify")
    assert "CALLVAULT_CATALOG_URL" in line and "'notaurl'" in line


def test_a_kafka_listener_that_does_not_answer(world) -> None:
    line = one_line(world, {"CALLVAULT_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}, "dlq", "list")
    assert "127.0.0.1:1" in line and "CALLVAULT_KAFKA_BOOTSTRAP_SERVERS" in line


def test_a_kafka_ca_file_that_does_not_exist(world, tmp_path: Path) -> None:
    missing = tmp_path / "missing-ca.pem"
    line = one_line(world, {"CALLVAULT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "CALLVAULT_KAFKA_SASL_USERNAME": "u",
                            "CALLVAULT_KAFKA_SASL_PASSWORD": "p", "CALLVAULT_KAFKA_SSL_CAFILE": str(missing)},
                    "dlq", "list")
    assert "CALLVAULT_KAFKA_SSL_CAFILE" in line and str(missing) in line


@pytest.mark.parametrize("args", [("dlq", "list"), ("push", "{audio}", "--tenant", "acme", "--agent", "a1",
                                                    "--started-at", "{now}", "--timeout", "5")])
def test_a_kafka_listener_down_is_one_line_on_stderr_in_a_real_process(world, args) -> None:
    """Outside pytest no logging is configured: aiokafka's own "Unable connect to ..." and an unclosed
    consumer's warning went to stderr through logging's last resort, around the one line."""
    import subprocess
    import sys
    from datetime import datetime, timedelta, timezone

    now = (datetime.now(timezone.utc) - timedelta(minutes=5)).isoformat()
    argv = [a.replace("{audio}", str(world.audio)).replace("{now}", now) for a in args]
    done = subprocess.run([sys.executable, "-m", "callvault.cli", *argv], capture_output=True, text=True, timeout=120,
                          env={**world.cli.env, "CALLVAULT_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), done.stderr
