"""The fault suite's own stack: a second Kafka, MinIO and PostgreSQL (own ports, data, pid
files and logs; the installs are shared with the main stack), so stopping and restarting a
server here never disturbs the rest of the suite.

The session fixtures ``kafka_bootstrap``, ``minio`` and ``postgres_url`` are overridden for
the tests in this directory, so the integration fixtures built on them (``pipeline``,
``storage_settings``, ``pg_schema_url``) run against this stack unchanged.
"""

from __future__ import annotations

from typing import Iterator

import pytest

from deploy.local.stack import Stack
from tests.support.stack import MinioEndpoint

FAULT_PORTS = {"kafka_port": 29092, "kafka_controller_port": 29093, "kafka_sasl_port": 29094, "minio_port": 29000,
               "minio_console_port": 29001, "postgres_port": 25432}


@pytest.fixture(scope="session")
def fault_stack(stack: Stack) -> Iterator[Stack]:
    """Started on first use (the main ``stack`` first: it owns the local config and secrets),
    stopped at the end of the session."""
    settings = stack.settings.model_copy(update={
        **FAULT_PORTS, "postgres_dir": stack.settings.postgres_dir.with_name(stack.settings.postgres_dir.name + "-faults"),
    })
    faults = Stack.from_settings(settings, instance="faults")
    faults.up(say=lambda _msg: None)
    yield faults
    faults.down(say=lambda _msg: None)


@pytest.fixture(scope="session")
def kafka_bootstrap(fault_stack: Stack) -> str:
    return fault_stack.kafka.address


@pytest.fixture(scope="session")
def minio(fault_stack: Stack) -> MinioEndpoint:
    return MinioEndpoint.of(fault_stack)


@pytest.fixture(scope="session")
def postgres_url(fault_stack: Stack) -> str:
    return fault_stack.postgres_url
