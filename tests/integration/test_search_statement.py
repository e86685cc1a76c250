"""The search's page statement, on real PostgreSQL (page, copies and caller keys in one statement,
``search.with_copies_and_keys``) and on SQLite (a query each): the same page either way.

Each copy of a recording is there with its fields (the one being deleted is not), the caller
number is opened with the right key (a destroyed key reads as erased), a restricted recording
and an expired copy are still listed, and pages follow each other across cursors.
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from access.api.search import Filters, search
from access.policy import User, decide
from core.vocabulary import Role
from storage.catalog import tables as t
from storage.catalog.db import enable_sqlite_pragmas
from storage.catalog.migrate import upgrade
from storage.keys import KeyRing

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
KEYS = KeyRing(os.urandom(32))
CONTROL = User("ic-1", Role.INTERNAL_CONTROL, frozenset({"acme"}), frozenset())
IT = User("it-1", Role.IT, frozenset({"acme"}), frozenset())


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request) -> sa.Engine:
    engine = enable_sqlite_pragmas(request.getfixturevalue("sqlite_engine")) if request.param == "sqlite" \
        else request.getfixturevalue("pg_engine")
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(t.tenants.insert().values(id="acme", name="Acme", created_at=NOW))
    return engine


def _recording(conn: sa.Connection, i: int, number: str, *, restricted: bool = False) -> uuid.UUID:
    rid = uuid.uuid4()
    number_hash = KEYS.number_hash("acme", number)
    caller = KEYS.caller_key(conn, tenant="acme", number_hash=number_hash)
    conn.execute(t.recordings.insert().values(
        id=rid, tenant_id="acme", external_id=f"ext-{i}", started_at=NOW - timedelta(minutes=i), direction="inbound",
        number_hash=number_hash, agent_id="a1", team_id="t1", duration_ms=1000, audio_format="opus", channels=1,
        restricted=restricted, restricted_at=NOW if restricted else None, created_at=NOW, content_sha256="0" * 64,
        caller_number_sealed=KEYS.seal_number(caller, tenant="acme", recording_id=rid, e164=number),
        caller_key_id=caller.id))
    return rid


def _copy(conn: sa.Connection, rid: uuid.UUID, tier: str, *, minute: int = 0, expires: timedelta = timedelta(days=30),
          hold: bool = False, deleting: bool = False, reason: str = "") -> uuid.UUID:
    cid = uuid.uuid4()
    key_id = conn.execute(sa.select(t.recordings.c.caller_key_id).where(t.recordings.c.id == rid)).scalar()
    conn.execute(t.copies.insert().values(
        id=cid, recording_id=rid, tier=tier, object_key=f"{rid}/{tier}/{reason}", bucket="b",
        size_bytes=1000 + minute, stored_sha256="d" * 64, wrapped_data_key=b"w" * 40, caller_key_id=key_id,
        frame_size=1024, created_at=NOW + timedelta(minutes=minute), created_by="test", reason=reason,
        training_report="report" if tier == "training" else None, expires_at=NOW + expires,
        deleting_at=NOW if deleting else None,
        **(dict(hold=True, hold_reason="case", hold_actor="ic", hold_at=NOW) if hold else {})))
    return cid


def _search(conn, user=CONTROL, filters=Filters(), limit=50, cursor=None):
    def rule(action, target):
        return decide(user, action, target, now=NOW)

    return search(conn, KEYS, user, filters, limit=limit, cursor=cursor, decide=rule)


def test_every_live_copy_of_a_recording_is_there_with_its_fields_in_creation_order(engine):
    with engine.begin() as conn:
        rid = _recording(conn, 1, "+33612345678")
        extract = _copy(conn, rid, "complaint-extract", minute=3, reason="case-1", hold=True)
        production = _copy(conn, rid, "production", minute=1, expires=timedelta(days=-1))  # expired: still listed
        monitoring = _copy(conn, rid, "monitoring", minute=2)
        _copy(conn, rid, "training", minute=4, deleting=True)  # being deleted: gone for the API
    with engine.connect() as conn:
        (found,), following = _search(conn)
        assert following is None
        assert [c["id"] for c in found.copies] == [production, monitoring, extract]
        first = found.copies[0]
        assert (first["tier"], first["hold"], first["size_bytes"], first["frame_size"]) == \
            ("production", False, 1001, 1024)
        assert first["expires_at"] == NOW - timedelta(days=1) and first["expires_at"].tzinfo is not None
        assert found.copies[2]["hold"] is True
        (narrowed,), _ = _search(conn, filters=Filters(tier="monitoring"))
        assert [c["id"] for c in narrowed.copies] == [monitoring]


def test_caller_numbers_are_opened_with_each_recordings_key_and_an_erased_one_reads_erased(engine):
    with engine.begin() as conn:
        shared = [_recording(conn, i, "+33612345678") for i in (1, 2)]  # one caller key for both
        other = _recording(conn, 3, "+33698765432")
        erased = _recording(conn, 4, "+33611111111")
        for rid in (*shared, other, erased):
            _copy(conn, rid, "production")
        key_id = conn.execute(sa.select(t.recordings.c.caller_key_id).where(t.recordings.c.id == erased)).scalar()
        KeyRing.destroy_ids(conn, [key_id], now=NOW)
    with engine.connect() as conn:
        page, _ = _search(conn)
        numbers = {f.recording["id"]: f.caller_number for f in page}
        assert numbers == {shared[0]: "+33612345678", shared[1]: "+33612345678", other: "+33698765432",
                           erased: "(erased)"}
        masked, _ = _search(conn, user=IT)
        assert all(f.mask_numbers and f.caller_number != numbers[f.recording["id"]] for f in masked
                   if f.recording["id"] != erased)


def test_a_restricted_recording_is_still_listed(engine):
    with engine.begin() as conn:
        rid = _recording(conn, 1, "+33612345678", restricted=True)
        _copy(conn, rid, "production", expires=timedelta(days=-3))
    with engine.connect() as conn:
        (found,), _ = _search(conn)
        assert found.recording["id"] == rid and found.recording["restricted"]


def test_pages_follow_each_other_across_cursors_newest_first(engine):
    with engine.begin() as conn:
        ids = [_recording(conn, i, f"+336123456{i:02d}") for i in range(7)]  # i minutes ago: newest first
        for i, rid in enumerate(ids):
            _copy(conn, rid, "production")
            if i % 2:
                _copy(conn, rid, "monitoring", minute=1)
    with engine.connect() as conn:
        got, cursor, sizes = [], None, []
        while True:
            page, cursor = _search(conn, limit=3, cursor=cursor)
            sizes.append(len(page))
            got += [(f.recording["id"], len(f.copies)) for f in page]
            if cursor is None:
                break
        assert sizes == [3, 3, 1]
        assert got == [(rid, 1 + i % 2) for i, rid in enumerate(ids)]


def test_on_postgresql_a_page_is_one_statement(engine):
    with engine.begin() as conn:
        for i in range(3):
            _copy(conn, _recording(conn, i, "+33612345678"), "production")
    statements = []
    sa.event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    with engine.connect() as conn:
        page, _ = _search(conn, limit=2)
    assert len(page) == 2
    assert len(statements) == (1 if engine.dialect.name == "postgresql" else 3), statements
