"""``callvault worker --processes N`` (``ingest.processes``) against the real Kafka, MinIO and
PostgreSQL: the members of one supervisor share the recordings partitions as N separate workers
would, and a member SIGKILLed under load (the out-of-memory killer) is restarted while the others
take over its partitions; the backlog is stored exactly once (``tests.support.durability``)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from storage.catalog import tables as t
from testbed.pipeline import wait_for_members
from tests.support.durability import (
    FAST_FAILOVER,
    assert_stored_exactly_once,
    make_batch,
    wait_for_stored,
    wait_until_done,
)

pytestmark = pytest.mark.integration


def _members(supervisor: subprocess.Popen) -> list[int]:
    """The supervisor's live child processes (its members)."""
    out = subprocess.run(["pgrep", "-P", str(supervisor.pid)], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split()]


def test_two_processes_store_a_backlog_exactly_once_when_a_member_is_killed(pipeline):
    batch = make_batch(60, "procs")
    pipeline.stop_worker()  # the fixture's one-process worker, restarted as a supervisor of two
    pipeline.env.update(FAST_FAILOVER, CALLVAULT_INGEST_PROCESSES="2")
    pipeline.start_worker()
    supervisor = {"supervisor": (pipeline.process, pipeline.log_path)}
    wait_for_members(pipeline, 2)
    members = _members(pipeline.process)
    assert len(members) == 2

    pipeline.push(*batch.calls)
    wait_for_stored(pipeline, 10, supervisor)
    os.kill(members[1], signal.SIGKILL)
    rows_at_kill = pipeline.count(t.recordings)
    assert rows_at_kill < len(batch.calls), "the calls were all stored before the kill"

    outputs = wait_until_done(pipeline, batch, supervisor)
    counts = assert_stored_exactly_once(pipeline, batch, outputs)
    log = pipeline.log_path.read_text(errors="replace")
    assert "worker process 2/2" in log and "restarting it" in log  # the supervisor noticed and restarted it
    deadline = time.monotonic() + 30
    while len(_members(pipeline.process)) != 2:  # the killed member is back
        assert time.monotonic() < deadline, f"members: {_members(pipeline.process)}"
        time.sleep(0.5)
    print(f"\nmember SIGKILLed with {rows_at_kill} rows committed; {counts}")
