"""``callvault worker --processes N``: the supervisor of N one-process workers (``ingest.processes``).
That N members of one group store a backlog exactly once is checked against the real stack in
tests/integration/test_ingest_processes.py."""

import signal
import sys
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import ConfigurationError
from ingest.processes import Supervisor, check_processes, member_env
from ingest.settings import IngestSettings, KafkaSettings


def test_each_member_is_one_process_with_ports_of_its_own():
    settings = IngestSettings(web_port=6066, metrics_port=9466)
    env = member_env(2, settings, {"PATH": "/bin", "CALLVAULT_INGEST_PROCESSES": "3"})
    assert env == {"PATH": "/bin", "CALLVAULT_INGEST_PROCESSES": "1", "CALLVAULT_INGEST_WEB_PORT": "6068",
                   "CALLVAULT_INGEST_METRICS_PORT": "9468"}
    off = member_env(1, IngestSettings(web_port=0, metrics_port=0), {})
    assert off == {"CALLVAULT_INGEST_PROCESSES": "1"}  # a disabled port stays disabled


@given(processes=st.integers(1, 16), web=st.integers(1024, 60000), metrics=st.integers(1024, 60000))
def test_any_number_of_members_gets_one_process_each_and_no_port_twice(processes, web, metrics):
    settings = IngestSettings(web_port=web, metrics_port=metrics)
    envs = [member_env(i, settings, {}) for i in range(processes)]
    assert all(env["CALLVAULT_INGEST_PROCESSES"] == "1" for env in envs)  # a member never supervises
    for name in ("CALLVAULT_INGEST_WEB_PORT", "CALLVAULT_INGEST_METRICS_PORT"):
        assert len({env[name] for env in envs}) == processes
    if not set(range(web, web + processes)) & set(range(metrics, metrics + processes)):
        assert len({env[n] for env in envs for n in ("CALLVAULT_INGEST_WEB_PORT",
                                                       "CALLVAULT_INGEST_METRICS_PORT")}) == 2 * processes


def test_more_processes_than_partitions_are_refused_naming_both():
    check_processes(4, KafkaSettings(partitions=4))
    with pytest.raises(ConfigurationError, match="5 worker processes.*4 partitions"):
        check_processes(5, KafkaSettings(partitions=4))


def test_a_member_that_dies_is_restarted_and_stop_reaches_every_member():
    starts: list[int] = []

    def env_of(index: int) -> dict[str, str]:
        starts.append(index)
        return {"DIE": "1" if starts.count(index) == 1 and index == 1 else "0"}

    # member 1 dies once at start (the out-of-memory killer); the others live until signalled
    script = ("import os, signal, sys, time\n"
              "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
              "sys.exit(9) if os.environ['DIE'] == '1' else time.sleep(60)")
    sup = Supervisor(3, [sys.executable, "-c", script], env_of, restart_pause_s=0.1)
    stopper = threading.Thread(target=lambda: (_wait_for(lambda: starts.count(1) == 2), time.sleep(0.5),
                                               sup.stop(signal.SIGTERM)))
    stopper.start()
    assert sup.run() == 0  # every member left on SIGTERM
    stopper.join()
    assert sorted(starts) == [0, 1, 1, 2]
    assert all(proc.poll() is not None for proc in sup.members.values())


def test_a_member_that_keeps_dying_at_start_is_given_up_and_its_status_returned():
    starts: list[int] = []

    def env_of(index: int) -> dict[str, str]:
        starts.append(index)
        return {"DIE": "1" if index == 0 else "0"}

    # member 0 cannot start (a bad setting: it exits 3 at once, every time); member 1 would run for an
    # hour, past the test's timeout, unless the supervisor stops it (SIGTERM: it exits 0)
    script = ("import os, signal, sys, time\n"
              "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
              "sys.exit(3) if os.environ['DIE'] == '1' else time.sleep(3600)")
    sup = Supervisor(2, [sys.executable, "-c", script], env_of, restart_pause_s=0.05, max_quick_deaths=3)
    assert sup.run() == 3  # the failing member's status, not 0 from the member stopped with it
    assert starts.count(0) == 3 and starts.count(1) == 1
    assert all(proc.poll() is not None for proc in sup.members.values())


def _wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.05)
