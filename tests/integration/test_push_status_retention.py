"""A pushed call's status is kept a while once settled, then forgotten by the worker's sweep
(``ingest.background.forget_pushes``); a call still queued is kept. On both catalog engines."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from ingest import pushes
from ingest.background import forget_pushes
from storage.catalog import tables as t
from tests.support.catalog import NOW

pytestmark = pytest.mark.integration


def _push(conn, external_id: str, *, accepted, outcome: str | None = None, settled=None) -> uuid.UUID:
    rid = uuid.uuid4()
    pushes.accept(conn, recording_id=rid, tenant="acme", external_id=external_id, door="http", principal="pbx-acme",
                  fingerprint="f" * 64, now=accepted)
    if outcome is not None:
        pushes.settle(conn, rid, outcome, now=settled)
    return rid


def test_settled_pushes_are_forgotten_after_their_days_and_queued_ones_kept(catalog):
    now = NOW
    with catalog.begin() as conn:
        old = _push(conn, "old", accepted=now - timedelta(days=40), outcome="dead-lettered",
                    settled=now - timedelta(days=40))
        recent = _push(conn, "recent", accepted=now - timedelta(days=5), outcome="suppressed",
                       settled=now - timedelta(days=5))
        stuck = _push(conn, "stuck", accepted=now - timedelta(days=40))  # never settled: an operator must see it
        assert pushes.forget_settled(conn, now=now, days=30) == 1
        kept = {r.recording_id for r in conn.execute(t.pushes.select())}
        assert kept == {recent, stuck}
        assert pushes.status(conn, tenant="acme", external_id="old", recording_id=old) is None
        assert pushes.status(conn, tenant="acme", external_id="stuck", recording_id=stuck).state == pushes.State.QUEUED
        assert pushes.forget_settled(conn, now=now + timedelta(days=26), days=30) == 1  # recent, 31 days on


def test_the_worker_sweep_forgets_with_the_setting(catalog):
    three_days_ago = datetime.now(timezone.utc) - timedelta(days=3)  # the sweep reads the wall clock
    with catalog.begin() as conn:
        _push(conn, "a", accepted=three_days_ago, outcome="stored", settled=three_days_ago)
    deps = SimpleNamespace(engine=catalog)
    assert forget_pushes(deps, days=30) == 0
    assert forget_pushes(deps, days=1) == 1


def test_a_backlog_is_forgotten_a_batch_at_a_time(catalog):
    long_ago = NOW - timedelta(days=90)
    with catalog.begin() as conn:
        for i in range(5):
            _push(conn, f"old-{i}", accepted=long_ago, outcome="stored", settled=long_ago)
        assert [pushes.forget_settled(conn, now=NOW, days=30, limit=2) for _ in range(4)] == [2, 2, 1, 0]
