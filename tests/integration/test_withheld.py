"""Calls whose number was withheld (issue 14): stored like any other through the real worker,
under an identity of their own per recording; never reached by a request by number; erased
by recording id."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from access.api.search import Filters, search
from access.policy import User, decide
from access.subjects import Actor, erase, erase_recordings, export
from core.vocabulary import Role
from ingest.producer import Call
from storage.catalog import tables as t
from storage.copies import read_copy
from storage.keys import KeyRing
from storage.ledger import ErasureLedger
from testbed.audio import sine_wav

pytestmark = pytest.mark.integration
IC = Actor("ic-1")
NUMBER = "+33612345678"


def test_a_withheld_call_is_stored_played_shown_as_withheld_and_erased_by_recording_id_only(pipeline) -> None:
    now = datetime.now(timezone.utc)
    calls = [Call(audio=sine_wav(1.0), tenant="acme", agent_id="a1", caller_number=marker,
                  started_at=now - timedelta(minutes=1), recording_id=f"withheld-{i}")
             for i, marker in enumerate([None, "anonymous", " Withheld ", ""])]
    calls.append(Call(audio=sine_wav(1.0), tenant="acme", agent_id="a1", caller_number=NUMBER,
                      started_at=now - timedelta(minutes=1), recording_id="known"))
    pipeline.push(*calls)
    stored = pipeline.wait_for(lambda e: e.get("type") == "stored", count=5)
    assert not [e for e in pipeline.seen if e.get("type") != "stored"]
    keys = KeyRing.from_settings(pipeline.storage)
    ledger = ErasureLedger.from_settings(pipeline.store, pipeline.storage)
    with pipeline.engine.connect() as conn:
        recs = {r["external_id"]: r for r in conn.execute(sa.select(t.recordings)).mappings()}
        withheld = [recs[f"withheld-{i}"] for i in range(4)]
        # Each withheld call has a key of its own; none shares the known number's hash or key.
        assert len({r["caller_key_id"] for r in withheld} | {recs["known"]["caller_key_id"]}) == 5
        assert [keys.open_number(conn, r) for r in withheld] == [""] * 4
        copy_ids = {e["external_id"]: e["copy_id"] for e in stored}
        assert len(read_copy(conn, pipeline.store, keys, copy_ids["withheld-0"])) > 1000  # played
        ic = User("ic-1", Role.INTERNAL_CONTROL, frozenset({"acme"}))
        page, _ = search(conn, keys, ic, Filters(), limit=50, cursor=None,
                         decide=lambda action, target: decide(ic, action, target, now=now))
        shown = {f.recording["external_id"]: f.caller_number for f in page}
        assert shown == {**{f"withheld-{i}": "withheld" for i in range(4)}, "known": NUMBER}
        # A request by number never reaches them, whatever the "number" looks like.
        for number in (NUMBER,):
            page, _ = search(conn, keys, ic, Filters(number=number), limit=50, cursor=None,
                             decide=lambda action, target: decide(ic, action, target, now=now))
            assert [f.recording["external_id"] for f in page] == ["known"]

    with pipeline.engine.begin() as conn:
        report = erase(conn, pipeline.store, keys, ledger, tenant="acme", numbers=[NUMBER], actor=IC, now=now)
        assert report.erased_recordings == [str(recs["known"]["id"])]
        assert export(conn, pipeline.store, keys, tenant="acme", numbers=[NUMBER], actor=IC, now=now).recordings == 0
    assert pipeline.count(t.recordings) == 4

    target = withheld[0]
    with pipeline.engine.begin() as conn:
        report = erase_recordings(conn, pipeline.store, keys, ledger, tenant="acme", recording_ids=[target["id"]],
                                  actor=IC, now=now)
    assert report.erased_recordings == [str(target["id"])] and report.keys_destroyed == 1
    with pipeline.engine.connect() as conn:
        assert conn.execute(sa.select(t.caller_keys.c.wrapped_key).where(
            t.caller_keys.c.id == target["caller_key_id"])).scalar() is None
        assert {r["external_id"] for r in conn.execute(sa.select(t.recordings)).mappings()} == {
            "withheld-1", "withheld-2", "withheld-3"}
        for other in withheld[1:]:  # the other withheld calls keep their keys and stay readable
            assert len(read_copy(conn, pipeline.store, keys, copy_ids[other["external_id"]])) > 1000
    entries = [e for _, e in ledger.entries()]
    assert entries[-1].recording_ids == [str(target["id"])] and "612345678" not in json.dumps(
        [e.__dict__ for e in entries])


def test_erasing_one_recording_of_a_known_number_keeps_the_number_s_key(pipeline) -> None:
    now = datetime.now(timezone.utc)
    pipeline.push(*[Call(audio=sine_wav(1.0), tenant="acme", agent_id="a1", caller_number=NUMBER,
                         started_at=now - timedelta(minutes=1), recording_id=f"k-{i}") for i in range(2)])
    stored = pipeline.wait_for(lambda e: e.get("type") == "stored", count=2)
    keys = KeyRing.from_settings(pipeline.storage)
    with pipeline.engine.begin() as conn:
        first = conn.execute(sa.select(t.recordings).where(t.recordings.c.external_id == "k-0")).mappings().one()
        report = erase_recordings(conn, pipeline.store, keys,
                                  ErasureLedger.from_settings(pipeline.store, pipeline.storage), tenant="acme",
                                  recording_ids=[first["id"]], actor=IC, now=now)
    assert report.keys_destroyed == 0 and len(report.erased_recordings) == 1
    other = next(e["copy_id"] for e in stored if e["external_id"] == "k-1")
    with pipeline.engine.connect() as conn:
        assert len(read_copy(conn, pipeline.store, keys, other)) > 1000
