"""The fault suite (issue 9): while 500 calls are ingested, one server or the worker fails.

Each test pushes 500 calls to a real `callvault worker`, waits until it is well into them,
then injects one fault on the fault suite's own stack (see ``conftest.py``):

- the worker is SIGKILLed and started again;
- MinIO is stopped for 30 s, then started again;
- Kafka is stopped (a clean broker shutdown) and started again;
- PostgreSQL is stopped (``pg_ctl -m fast``: every connection is cut) and started again.

After recovery the invariants of "stored exactly once" must hold, as in
``tests.support.durability``: exactly 500 recordings and copies, no duplicate, no orphan object,
no dangling row, every copy decrypts with the call's duration, the dead-letter topic is empty,
and the consumer group has committed the whole topic.  A server outage must be ridden out by
retrying (never by dead-lettering a good call), which the worker's log shows.
"""

from __future__ import annotations

import signal
import time
from typing import Callable

import pytest

from deploy.local.stack import Stack
from storage.catalog import tables as t
from testbed.pipeline import Pipeline
from tests.support.durability import (FAST_FAILOVER, assert_stored_exactly_once, make_batch, wait_for_stored,
                                      wait_until_done)

pytestmark = [pytest.mark.integration, pytest.mark.fault]

CALLS = 500
STORED_BEFORE_FAULT = 60
MINIO_OUTAGE_SECONDS = 30.0
RECOVERY_TIMEOUT = 420.0  # from the fault to "all 500 have an outcome and the group lag is 0"


def _restart(server) -> None:
    server.stop()
    server.start()
    server.wait_until_answers()


def kill_worker(pipeline: Pipeline, _stack: Stack) -> None:
    pipeline.stop_worker(sig=signal.SIGKILL)
    pipeline.start_worker()


def stop_minio_30s(_pipeline: Pipeline, stack: Stack) -> None:
    stack.minio.stop()
    time.sleep(MINIO_OUTAGE_SECONDS)
    stack.minio.start()
    stack.minio.wait_until_answers()


def restart_kafka(_pipeline: Pipeline, stack: Stack) -> None:
    _restart(stack.kafka)


def restart_postgres(pipeline: Pipeline, stack: Stack) -> None:
    _restart(stack.postgres)
    pipeline.engine.dispose()  # the test's own pooled connections died with the server


FAULTS: dict[str, Callable[[Pipeline, Stack], None]] = {
    "sigkill-worker": kill_worker,
    "stop-minio-30s": stop_minio_30s,
    "restart-kafka": restart_kafka,
    "restart-postgres": restart_postgres,
}
# What the surviving worker must have logged: it retried through the outage.
RETRIED = {"stop-minio-30s": "retrying partition=", "restart-postgres": "retrying partition="}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_500_calls_are_stored_exactly_once_through_a_fault(fault, pipeline, fault_stack):
    batch = make_batch(CALLS, fault)
    pipeline.stop_worker()  # the fixture's worker, restarted with faster failure detection
    pipeline.env.update(FAST_FAILOVER)
    pipeline.start_worker()
    workers = lambda: {"worker": (pipeline.process, pipeline.log_path)}  # noqa: E731

    started = time.monotonic()
    pipeline.push(*batch.calls)
    pushed = time.monotonic()
    wait_for_stored(pipeline, STORED_BEFORE_FAULT, workers(), timeout=240)
    rows_at_fault = pipeline.count(t.recordings)
    assert rows_at_fault < CALLS, "the worker finished before the fault: nothing was in flight"
    log_before = len(pipeline.log_path.read_bytes())

    fault_at = time.monotonic()
    FAULTS[fault](pipeline, fault_stack)
    recovered = time.monotonic()

    outputs = wait_until_done(pipeline, batch, workers(), timeout=RECOVERY_TIMEOUT)
    done = time.monotonic()
    counts = assert_stored_exactly_once(pipeline, batch, outputs)
    assert counts["stored"] == CALLS
    if fault in RETRIED:
        after = pipeline.log_path.read_bytes()[log_before:].decode(errors="replace")
        assert RETRIED[fault] in after, f"the worker never retried through the {fault}:\n{after[-3000:]}"
    print(f"\n{fault}: pushed {CALLS} in {pushed - started:.1f}s; fault after {rows_at_fault} rows "
          f"({fault_at - started:.1f}s); fault took {recovered - fault_at:.1f}s; all done "
          f"{done - recovered:.1f}s after recovery; {counts}")
