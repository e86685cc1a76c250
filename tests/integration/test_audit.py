"""The audit trail on PostgreSQL: `verify` catches an edited, a deleted and a reordered entry."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from storage.audit import append, verify
from storage.catalog import tables as t
from storage.catalog.migrate import upgrade
from tests.support.catalog import NOW

pytestmark = pytest.mark.integration


@pytest.fixture
def trail(pg_engine):
    upgrade(pg_engine)
    with pg_engine.begin() as conn:
        for i in range(6):
            append(conn, tenant="acme", actor=f"user-{i}", role="manager", action="recording:audio:stream", target_type="copy",
                   target_id=f"copy-{i}", outcome="allowed" if i % 2 else "denied", reason="in scope",
                   detail={"range": [0, 1000 * i]}, at=NOW + timedelta(seconds=i))
    with pg_engine.connect() as conn:
        assert verify(conn).ok and verify(conn).entries == 6
    return pg_engine


def seqs(engine):
    with engine.connect() as conn:
        return conn.execute(sa.select(t.audit_events.c.seq).order_by(t.audit_events.c.seq)).scalars().all()


def test_an_edited_entry_is_detected(trail):
    third = seqs(trail)[2]
    with trail.begin() as conn:
        conn.execute(t.audit_events.update().where(t.audit_events.c.seq == third).values(outcome="allowed"))
        result = verify(conn)
    assert not result.ok and result.first_bad_seq == third and "edited" in result.problem


def test_a_deleted_entry_is_detected(trail):
    s = seqs(trail)
    with trail.begin() as conn:
        conn.execute(t.audit_events.delete().where(t.audit_events.c.seq == s[3]))
        result = verify(conn)
    assert not result.ok and result.first_bad_seq == s[4] and "deleted or reordered" in result.problem


def test_a_reordered_pair_is_detected(trail):
    s = seqs(trail)
    with trail.begin() as conn:
        rows = {r["seq"]: dict(r) for r in conn.execute(sa.select(t.audit_events)).mappings()}
        a, b = rows[s[1]], rows[s[2]]
        # Swap the two entries' places, each keeping its own content and hashes.
        conn.execute(t.audit_events.delete().where(t.audit_events.c.seq.in_([s[1], s[2]])))
        conn.execute(t.audit_events.insert(), [{**b, "seq": s[1]}, {**a, "seq": s[2]}])
        result = verify(conn)
    assert not result.ok and result.first_bad_seq == s[1]


def test_appends_from_concurrent_transactions_keep_one_chain(pg_engine):
    import threading

    upgrade(pg_engine)

    def writer(n: int) -> None:
        for i in range(20):
            with pg_engine.begin() as conn:
                append(conn, tenant=None, actor=f"w{n}", role="it", action="lifecycle:sweep:run", target_type="tenant",
                       target_id="acme", outcome="done")

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    with pg_engine.connect() as conn:
        result = verify(conn)
    assert result.ok and result.entries == 80


def test_an_append_waiting_for_the_lock_chains_on_the_entry_committed_meanwhile(pg_engine):
    """The head is read after the lock is granted, with a fresh snapshot: an append that waited
    for another transaction's lock links to that transaction's entry, not to the older head."""
    import threading
    import time

    upgrade(pg_engine)
    with pg_engine.begin() as conn:
        append(conn, tenant=None, actor="first", role="it", action="lifecycle:sweep:run", target_type="tenant",
               target_id="acme", outcome="done")
    holder = pg_engine.connect()
    holder.begin()
    append(holder, tenant=None, actor="holder", role="it", action="lifecycle:sweep:run", target_type="tenant",
           target_id="acme", outcome="done")  # takes the lock, not committed yet
    errors: list[BaseException] = []

    def waiter() -> None:
        try:
            with pg_engine.begin() as conn:
                append(conn, tenant=None, actor="waiter", role="it", action="lifecycle:sweep:run",
                       target_type="tenant", target_id="acme", outcome="done")
        except BaseException as exc:  # reported below
            errors.append(exc)

    th = threading.Thread(target=waiter)
    th.start()
    time.sleep(0.5)  # the waiter is blocked on the lock, its statement already started
    holder.commit()
    holder.close()
    th.join(timeout=30)
    assert not errors
    with pg_engine.connect() as conn:
        rows = conn.execute(sa.select(t.audit_events.c.actor, t.audit_events.c.prev_hash, t.audit_events.c.hash)
                            .order_by(t.audit_events.c.seq)).all()
        assert [r.actor for r in rows] == ["first", "holder", "waiter"]
        assert rows[2].prev_hash == rows[1].hash
        assert verify(conn).ok


def _unit_append(uow, actor: str) -> None:
    append(uow.conn, tenant="acme", actor=actor, role="it", action="lifecycle:sweep:run", target_type="tenant",
           target_id="acme", outcome="done")


def test_a_unit_of_work_sends_its_audit_insert_with_the_commit(pg_engine):
    """On PostgreSQL the entries a unit collected are inserted in pipeline mode and the COMMIT
    follows in the same pipeline (one round trip); the entry is committed and the chain verifies."""
    from psycopg import pq

    from storage.catalog.db import UnitOfWork

    upgrade(pg_engine)
    seen: list[str] = []

    def watch(conn, cursor, statement, *_args) -> None:
        if "INSERT INTO audit_events" in statement:
            seen.append(pq.PipelineStatus(conn.connection.driver_connection.pgconn.pipeline_status).name)

    sa.event.listen(pg_engine, "before_cursor_execute", watch)
    with UnitOfWork(pg_engine) as uow:
        _unit_append(uow, "first")
        uow.commit()
        _unit_append(uow, "second")  # the unit goes on after a commit, in a fresh transaction
        uow.commit()
        assert uow.conn.connection.driver_connection.pgconn.pipeline_status == pq.PipelineStatus.OFF
    sa.event.remove(pg_engine, "before_cursor_execute", watch)
    assert seen == ["ON", "ON"]
    with pg_engine.connect() as conn:
        assert [r.actor for r in conn.execute(sa.select(t.audit_events.c.actor).order_by(t.audit_events.c.seq))] \
            == ["first", "second"]
        assert verify(conn).ok


def test_concurrent_units_of_work_appending_with_their_commit_keep_one_chain(pg_engine):
    import threading

    from storage.catalog.db import UnitOfWork

    upgrade(pg_engine)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(15):
                with UnitOfWork(pg_engine) as uow:
                    _unit_append(uow, f"w{n}-{i}")
                    if i % 3 == 0:
                        _unit_append(uow, f"w{n}-{i}-b")  # two entries in one unit
                    uow.commit()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not errors
    with pg_engine.connect() as conn:
        result = verify(conn)
    assert result.ok and result.entries == 8 * 20


def test_a_commit_failing_in_the_pipeline_raises_and_leaves_no_entry(pg_engine):
    """A COMMIT refused by PostgreSQL (here a deferred unique constraint) sent with the audit
    insert is raised as SQLAlchemy's IntegrityError; nothing is committed and the unit stays usable."""
    from storage.catalog.db import UnitOfWork

    upgrade(pg_engine)
    with pg_engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE deferred_probe (k int, CONSTRAINT deferred_probe_k UNIQUE (k) "
                             "DEFERRABLE INITIALLY DEFERRED)"))
    with UnitOfWork(pg_engine) as uow:
        uow.conn.execute(sa.text("INSERT INTO deferred_probe VALUES (1), (1)"))  # refused only at COMMIT
        _unit_append(uow, "refused")
        with pytest.raises(sa.exc.IntegrityError, match="deferred_probe_k"):
            uow.commit()
        uow.rollback()
        _unit_append(uow, "after")
        uow.commit()
    with pg_engine.connect() as conn:
        assert [r.actor for r in conn.execute(sa.select(t.audit_events.c.actor))] == ["after"]
        assert verify(conn).ok


@pytest.mark.parametrize("column, value", [("detail", "not json"), ("chain", "x")])
def test_an_entry_edited_into_what_the_column_type_forbids_is_named_on_sqlite(sqlite_engine, column, value):
    """SQLite stores whatever text an editor writes (PostgreSQL's jsonb and integer refuse it): verify
    names the entry as edited instead of failing to read it (a traceback before)."""
    upgrade(sqlite_engine)
    with sqlite_engine.begin() as conn:
        for i in range(3):
            append(conn, tenant="acme", actor=f"user-{i}", role="manager", action="recording:audio:stream",
                   target_type="copy", target_id=f"copy-{i}", outcome="allowed", detail={"range": [0, i]},
                   at=NOW + timedelta(seconds=i))
    second = seqs(sqlite_engine)[1]
    with sqlite_engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE audit_events SET {column} = ? WHERE seq = ?", (value, second))
        result = verify(conn)
    assert not result.ok and result.first_bad_seq == second and "edited" in result.problem
