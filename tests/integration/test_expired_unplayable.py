"""Expired means unplayable (DESIGN.md §Tiers, issue 13): a copy past its expiry and not held is
refused for streaming, stream links, export and as the source of a new copy from the instant it
expires, before any sweep deletes it; the refusal is audited. A legal hold keeps it playable.

On real MinIO with the catalog on SQLite and on PostgreSQL; the API's clock is pinned so "one
second before" and "one second after" are exact. No sweep runs in any of these tests.
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timedelta, timezone
from typing import Iterator

import pytest
import sqlalchemy as sa

from access.api.deps import now
from access.policy import EXPIRED
from lifecycle.copies import create_copy
from lifecycle.exceptions import CopyNotAllowed
from storage.catalog import tables as t
from storage.copies import read_copy
from tests.support.catalog import NOW, store_copy
from tests.support.world import World, build_world

pytestmark = pytest.mark.integration

SECOND = timedelta(seconds=1)
AT = datetime.now(timezone.utc).replace(microsecond=0)  # the API's pinned "now"; tokens are issued at real time


@pytest.fixture(params=["sqlite", "postgres"])
def world(request, store, keys, scratch_bucket, storage_settings) -> Iterator[World]:
    engine = request.getfixturevalue("sqlite_engine" if request.param == "sqlite" else "pg_engine")
    w = build_world(engine, store, keys, scratch_bucket, storage_settings)
    w.client.app.dependency_overrides[now] = lambda: AT
    with w.client:
        yield w
    w.assert_audit_verifies()


def expire(world: World, copy_id: uuid.UUID, at: datetime) -> None:
    with world.engine.begin() as conn:
        conn.execute(t.copies.update().where(t.copies.c.id == copy_id).values(expires_at=at))


def live_copy_ids(world: World, rid: uuid.UUID) -> set[uuid.UUID]:
    with world.engine.connect() as conn:
        return set(conn.execute(sa.select(t.copies.c.id).where(t.copies.c.recording_id == rid,
                                                               t.copies.c.deleting_at.is_(None))).scalars())


def refused_as_expired(response) -> bool:
    return response.status_code == 403 and response.json()["error"]["message"] == EXPIRED


def test_a_copy_one_second_past_expiry_is_refused_every_use_of_its_audio_before_any_sweep(world):
    rid = world.add_call("late", agent="a1", team="t1", tiers=("production",))
    copy_id = world.copies["late/production"]
    expire(world, copy_id, AT - SECOND)

    for user in ("consultant-1", "manager-1", "coach-1", "control-1"):
        assert refused_as_expired(world.get(f"/copies/{copy_id}/audio", user)), user
        assert refused_as_expired(world.post(f"/copies/{copy_id}/stream-link", user)), user
    assert refused_as_expired(world.get(f"/copies/{copy_id}/export", "control-1"))
    for user, body in (("manager-1", {"tier": "monitoring"}),
                       ("coach-1", {"tier": "training", "training_report": "good call"}),
                       ("control-1", {"tier": "complaint-extract", "reason": "CPL-1"})):
        assert refused_as_expired(world.post(f"/recordings/{rid}/copies", user, json=body)), user

    denied = [(r["action"], r["actor"]) for r in world.audit_rows(outcome="denied", reason=EXPIRED)]
    assert sorted(denied) == sorted(
        [("recording:audio:stream", u) for u in ("consultant-1", "manager-1", "coach-1", "control-1")] * 2
        + [("recording:audio:export", "control-1"), ("copy:monitoring:create", "manager-1"),
           ("copy:training:create", "coach-1"), ("copy:extract:create", "control-1")])
    assert not world.audit_rows(outcome="allowed", target_id=str(copy_id))
    assert not world.audit_rows(action="copy:create")  # nothing was copied
    # Not yet swept: the row is there and its metadata is still listed (metadata is not audio).
    assert live_copy_ids(world, rid) == {copy_id}
    detail = world.get(f"/recordings/{rid}", "control-1")
    assert detail.status_code == 200 and [c["id"] for c in detail.json()["copies"]] == [str(copy_id)]


def test_the_same_expired_copy_under_legal_hold_is_playable_exportable_and_copyable(world):
    rid = world.add_call("held", agent="a1", team="t1", tiers=("production",))
    copy_id, audio = world.copies["held/production"], world.audio["held"]
    expire(world, copy_id, AT - SECOND)
    assert refused_as_expired(world.get(f"/copies/{copy_id}/audio", "control-1"))
    assert world.post(f"/copies/{copy_id}/hold", "control-1", json={"reason": "LIT-13"}).status_code == 200

    assert world.get(f"/copies/{copy_id}/audio", "manager-1").content == audio
    link = world.post(f"/copies/{copy_id}/stream-link", "consultant-1")
    assert link.status_code == 200, link.text
    assert world.client.get(link.json()["url"]).content == audio
    assert world.get(f"/copies/{copy_id}/export", "control-1").content == audio
    made = world.post(f"/recordings/{rid}/copies", "control-1", json={"tier": "complaint-extract", "reason": "LIT-13"})
    assert made.status_code == 201, made.text
    assert world.audit_rows(action="copy:create")[-1]["detail"]["source_copy"] == str(copy_id)
    assert world.get(f"/copies/{made.json()['copy_id']}/audio", "control-1").content == audio
    # Released: expired again, refused again.
    assert world.delete(f"/copies/{copy_id}/hold", "control-1", params={"reason": "case closed"}).status_code == 200
    assert refused_as_expired(world.get(f"/copies/{copy_id}/audio", "control-1"))


def test_a_copy_one_second_before_expiry_is_playable_and_its_link_is_decided_again_at_use(world):
    rid = world.add_call("due", agent="a1", team="t1", tiers=("production",))
    copy_id, audio = world.copies["due/production"], world.audio["due"]
    expire(world, copy_id, AT + SECOND)

    assert world.get(f"/copies/{copy_id}/audio", "consultant-1", headers={"Range": "bytes=0-9"}).content == audio[:10]
    link = world.post(f"/copies/{copy_id}/stream-link", "consultant-1")
    assert link.status_code == 200, link.text
    assert world.get(f"/copies/{copy_id}/export", "control-1").content == audio
    made = world.post(f"/recordings/{rid}/copies", "manager-1", json={"tier": "monitoring"})
    assert made.status_code == 201, made.text
    # Two seconds on, the copy has expired: the link issued before is refused at use.
    world.client.app.dependency_overrides[now] = lambda: AT + 2 * SECOND
    assert refused_as_expired(world.client.get(link.json()["url"]))
    # ...while the monitoring copy made from it has its own clock and plays.
    assert world.get(f"/copies/{made.json()['copy_id']}/audio", "manager-1").content == audio


# --- lifecycle.copies.create_copy (the CLI's `copies create`, data-subject export) ---------------

def test_create_copy_refuses_an_expired_unheld_source_and_takes_a_live_or_held_one(catalog, store, keys,
                                                                                   scratch_bucket):
    audio = os.urandom(5000)
    rid, number_hash, prod, _ = store_copy(catalog, store, keys, scratch_bucket, audio, expires_at=NOW - SECOND)
    with catalog.begin() as conn, pytest.raises(CopyNotAllowed, match=EXPIRED):
        create_copy(conn, store, keys, recording_id=rid, tier="monitoring", actor="mgr-1", now=NOW)
    with catalog.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t.copies)).scalar() == 1  # not swept, not copied
    # A live training copy is taken over the expired production original.
    *_, training, _ = store_copy(catalog, store, keys, scratch_bucket, audio, tier="training", rid=rid,
                                 number_hash=number_hash, expires_at=NOW + SECOND, training_report="r")
    with catalog.begin() as conn:
        info = create_copy(conn, store, keys, recording_id=rid, tier="monitoring", actor="mgr-1", now=NOW)
        source = conn.execute(sa.select(t.audit_events.c.detail).where(t.audit_events.c.action == "copy:create")
                              .order_by(t.audit_events.c.seq.desc()).limit(1)).scalar()
        assert info.created and source["source_copy"] == str(training)
        assert read_copy(conn, store, keys, info.copy_id) == audio
    # Once that one is past its expiry too, only a hold makes the production original a source again.
    later = NOW + 2 * SECOND
    with catalog.begin() as conn:
        conn.execute(t.copies.update().where(t.copies.c.id == info.copy_id).values(expires_at=later))
        with pytest.raises(CopyNotAllowed, match=EXPIRED):
            create_copy(conn, store, keys, recording_id=rid, tier="complaint-extract", actor="ic-1", now=later,
                        reason="CPL-2")
    with catalog.begin() as conn:
        conn.execute(t.copies.update().where(t.copies.c.id == prod).values(
            hold=True, hold_reason="LIT-13", hold_actor="ic-1", hold_at=later))
        extract = create_copy(conn, store, keys, recording_id=rid, tier="complaint-extract", actor="ic-1",
                              now=later, reason="CPL-2")
        source = conn.execute(sa.select(t.audit_events.c.detail).where(t.audit_events.c.action == "copy:create")
                              .order_by(t.audit_events.c.seq.desc()).limit(1)).scalar()
        assert extract.created and source["source_copy"] == str(prod)
        assert read_copy(conn, store, keys, extract.copy_id) == audio
