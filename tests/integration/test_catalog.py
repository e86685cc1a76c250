"""The catalog on real PostgreSQL (per-test schema) and SQLite: migrations up, down and up
again, the Core tables matching the migration, constraints, the copy cascade, and the
query plans of the sweeper's, the data-subject requests' and search's lookups."""

from __future__ import annotations

import os
import random
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from storage.catalog import tables as t
from storage.catalog.db import enable_sqlite_pragmas
from storage.catalog.migrate import current_revision, downgrade, head_revision, upgrade
from tests.support.catalog import NOW, caller_key, copy_row, recording_row

pytestmark = pytest.mark.integration
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CATALOG_TABLES = {"tenants", "tenant_retention", "caller_keys", "recordings", "copies", "suppressions",
                  "users", "team_memberships", "audit_events", "break_glass", "ingest_attempts", "ingest_keys",
                  "dead_letters", "pushes", "erasures", "restrictions", "ledger_cursors"}


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request) -> sa.Engine:
    if request.param == "sqlite":
        return enable_sqlite_pragmas(request.getfixturevalue("sqlite_engine"))
    return request.getfixturevalue("pg_engine")


@pytest.fixture
def catalog(engine: sa.Engine) -> sa.Engine:
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(t.tenants.insert().values(id="acme", name="Acme", created_at=NOW))
    return engine


def table_names(engine: sa.Engine) -> set[str]:
    with engine.connect() as conn:
        return set(sa.inspect(conn).get_table_names())


# --- migrations -------------------------------------------------------------------------

def test_upgrade_downgrade_upgrade(engine: sa.Engine) -> None:
    upgrade(engine)
    assert table_names(engine) == CATALOG_TABLES | {"alembic_version"}
    assert current_revision(engine) == head_revision() == "0012"

    downgrade(engine, "base")
    assert table_names(engine) <= {"alembic_version"}
    assert current_revision(engine) is None

    upgrade(engine)
    assert table_names(engine) == CATALOG_TABLES | {"alembic_version"}


def test_0002_seals_the_numbers_of_an_existing_catalog(engine: sa.Engine, monkeypatch) -> None:
    """A catalog of 0001 with numbers in clear: after the upgrade no number is in clear, each
    opens with its caller key, and erasing that key makes it unreadable."""
    import base64

    from storage.keys import KeyRing
    from storage.settings import StorageSettings

    master = os.urandom(32)
    monkeypatch.setenv("CALLVAULT_STORAGE_MASTER_KEY", base64.b64encode(master).decode())
    keys = KeyRing.from_settings(StorageSettings())
    upgrade(engine, "0001")
    numbers = ["+33612345678", "+33698765432"]
    ids = [uuid.uuid4(), uuid.uuid4()]
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO tenants (id, name, created_at) VALUES ('acme', 'Acme', :now)"), {"now": NOW})
        for rid, number in zip(ids, numbers):
            conn.execute(sa.text(
                "INSERT INTO recordings (id, tenant_id, external_id, started_at, direction, caller_number, "
                "number_hash, agent_id, duration_ms, audio_format, channels, redactions, restricted, created_at, "
                "content_sha256) VALUES (:id, 'acme', :ext, :now, 'inbound', :number, :hash, 'a1', 1000, 'opus', "
                "1, '[]', false, :now, :sha)"),
                {"id": rid.hex if engine.dialect.name == "sqlite" else rid, "ext": f"e-{rid}", "now": NOW,
                 "number": number, "hash": keys.number_hash("acme", number), "sha": "0" * 64})
    upgrade(engine)
    with engine.begin() as conn:
        rows = {r["id"]: r for r in conn.execute(sa.select(t.recordings)).mappings()}
        dump = repr(conn.execute(sa.text("SELECT * FROM recordings")).all())
        assert not any(n in dump or n[1:] in dump for n in numbers)
        assert [keys.open_number(conn, rows[rid]) for rid in ids] == numbers
        KeyRing.destroy_ids(conn, [rows[ids[0]]["caller_key_id"]], now=NOW)
        assert keys.open_number(conn, rows[ids[0]]) is None and keys.open_number(conn, rows[ids[1]]) == numbers[1]


def test_0006_backfills_existing_break_glass_grants_to_production_only(engine: sa.Engine) -> None:
    """Grants made before grants named their tiers open production only after the upgrade."""
    upgrade(engine, "0004")
    grant_id = uuid.uuid4()
    as_id = (lambda u: u.hex) if engine.dialect.name == "sqlite" else (lambda u: u)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO tenants (id, name, created_at) VALUES ('acme', 'Acme', :now)"), {"now": NOW})
        conn.execute(sa.text("INSERT INTO users (id, display_name, role, tenants, revoked, created_at) "
                             "VALUES ('it-1', 'IT', 'it', '[\"acme\"]', false, :now)"), {"now": NOW})
        conn.execute(sa.text("INSERT INTO break_glass (id, user_id, ticket, granted_at, expires_at) "
                             "VALUES (:id, 'it-1', 'INC-1', :now, :later)"),
                     {"id": as_id(grant_id), "now": NOW, "later": NOW + timedelta(minutes=30)})
    upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(sa.select(t.break_glass.c.tiers)).scalar_one() == ["production"]


def test_0007_admits_telephony_users_and_keeps_memberships_and_grants(engine: sa.Engine) -> None:
    """The new role check is in force, and the copy SQLite needs loses no team membership or grant."""
    upgrade(engine, "0006")
    as_id = (lambda u: u.hex) if engine.dialect.name == "sqlite" else (lambda u: u)
    grant_id = uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO tenants (id, name, created_at) VALUES ('acme', 'Acme', :now)"), {"now": NOW})
        for user, role in (("mgr-1", "manager"), ("it-1", "it")):
            conn.execute(sa.text("INSERT INTO users (id, display_name, role, tenants, revoked, created_at) "
                                 "VALUES (:u, :u, :r, '[\"acme\"]', false, :now)"), {"u": user, "r": role, "now": NOW})
        conn.execute(sa.text("INSERT INTO team_memberships (user_id, tenant_id, team_id, relation) "
                             "VALUES ('mgr-1', 'acme', 'team-1', 'manager')"))
        conn.execute(sa.text("INSERT INTO break_glass (id, user_id, ticket, granted_at, expires_at) "
                             "VALUES (:id, 'it-1', 'INC-1', :now, :later)"),
                     {"id": as_id(grant_id), "now": NOW, "later": NOW + timedelta(minutes=30)})
    upgrade(engine)
    with engine.begin() as conn:
        assert conn.execute(sa.select(t.team_memberships.c.user_id)).scalars().all() == ["mgr-1"]
        assert conn.execute(sa.select(t.break_glass.c.id)).scalars().all() == [grant_id]
        conn.execute(t.users.insert().values(id="pbx-1", display_name="PBX", role="telephony", tenants=["acme"],
                                             revoked=False, created_at=NOW))
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO users (id, display_name, role, tenants, revoked, created_at) "
                             "VALUES ('x', 'x', 'robot', '[]', false, :now)"), {"now": NOW})


def test_0010_keeps_the_pushes_and_admits_erased_on_arrival(engine: sa.Engine) -> None:
    """The pushes outcome check takes ``erased-on-arrival``, the copy SQLite needs loses no push, and an
    erasure row names a number or a recording, never both nor neither."""
    upgrade(engine, "0009")
    as_id = (lambda u: u.hex) if engine.dialect.name == "sqlite" else (lambda u: u)
    rid = uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO tenants (id, name, created_at) VALUES ('acme', 'Acme', :now)"), {"now": NOW})
        conn.execute(sa.text("INSERT INTO pushes (recording_id, tenant_id, external_id, door, principal, fingerprint, "
                             "accepted_at, outcome) VALUES (:id, 'acme', 'tel-1', 'http', 'pbx-1', :fp, :now, "
                             "'stored')"), {"id": as_id(rid), "fp": "f" * 64, "now": NOW})
    upgrade(engine)
    with engine.begin() as conn:
        assert conn.execute(sa.select(t.pushes.c.recording_id, t.pushes.c.outcome)).all() == [(rid, "stored")]
        conn.execute(t.pushes.update().values(outcome="erased-on-arrival"))
        conn.execute(t.erasures.insert(), [
            dict(id=uuid.uuid4(), tenant_id="acme", number_hash="a" * 64, recording_id=None, erased_at=NOW,
                 ledger_entry="e1"),
            dict(id=uuid.uuid4(), tenant_id="acme", number_hash=None, recording_id=rid, erased_at=NOW,
                 ledger_entry="e1")])
    for bad in (dict(number_hash="a" * 64, recording_id=rid), {}):
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(t.erasures.insert().values(id=uuid.uuid4(), tenant_id="acme", erased_at=NOW,
                                                    ledger_entry="e2", **bad))
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(sa.text("UPDATE pushes SET outcome = 'vanished'"))
    downgrade(engine, "0009")
    with engine.begin() as conn:
        assert conn.execute(sa.text("SELECT outcome FROM pushes")).scalars().all() == ["suppressed"]


def test_upgrade_from_a_url_and_twice_is_a_no_op(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'by-url.sqlite3'}"
    upgrade(url)
    upgrade(url)
    assert current_revision(url) == head_revision()


@pytest.fixture
def twin(request, engine: sa.Engine, tmp_path) -> sa.Engine:
    """A second, empty database of the same kind as ``engine`` (SQLite file or PG schema)."""
    if engine.dialect.name == "sqlite":
        other = enable_sqlite_pragmas(sa.create_engine(f"sqlite:///{tmp_path / 'twin.sqlite3'}"))
        request.addfinalizer(other.dispose)
        return other
    url = request.getfixturevalue("postgres_url")
    schema = f"twin_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    other = sa.create_engine(url, connect_args={"options": f"-csearch_path={schema}"})

    def drop() -> None:
        other.dispose()
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()

    request.addfinalizer(drop)
    return other


def schema_of(engine: sa.Engine) -> dict:
    """Everything about the catalog tables a reflection sees, in comparable form."""
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        described = {}
        for name in sorted(CATALOG_TABLES):
            described[name] = dict(
                columns=[(c["name"], str(c["type"]), c["nullable"], c.get("default")) for c in inspector.get_columns(name)],
                pk=inspector.get_pk_constraint(name),
                fks=sorted((fk["name"], tuple(fk["constrained_columns"]), fk["referred_table"],
                            tuple(fk["referred_columns"]), tuple(sorted(fk["options"].items())))
                           for fk in inspector.get_foreign_keys(name)),
                indexes=sorted((ix["name"], tuple(ix["column_names"]), bool(ix["unique"]),
                                tuple(sorted((k, str(v)) for k, v in ix.get("dialect_options", {}).items())))
                               for ix in inspector.get_indexes(name)),
                uniques=sorted((u["name"], tuple(u["column_names"])) for u in inspector.get_unique_constraints(name)),
                checks=sorted((ck["name"], ck["sqltext"]) for ck in inspector.get_check_constraints(name)),
            )
        return described


def test_core_tables_match_the_migration(engine: sa.Engine, twin: sa.Engine) -> None:
    """Migrated schema == ``metadata.create_all`` schema, down to CHECKs and partial-index
    predicates (which Alembic's autogenerate does not compare)."""
    upgrade(engine)
    t.metadata.create_all(twin)
    migrated, declared = schema_of(engine), schema_of(twin)
    for name in sorted(CATALOG_TABLES):
        assert migrated[name] == declared[name], name
    assert migrated["copies"]["checks"] and migrated["recordings"]["checks"]  # reflection saw them

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, t.metadata) == []
        # Not vacuous: an index the migration lacks is reported.
        drifted = sa.MetaData(naming_convention=t.NAMING_CONVENTION)
        for table in t.metadata.sorted_tables:
            table.to_metadata(drifted)
        sa.Index("ix_not_migrated", drifted.tables["copies"].c.bucket)
        assert [diff[0] for diff in compare_metadata(context, drifted)] == ["add_index"]


# --- constraints and cascades -----------------------------------------------------------

def test_deleting_a_recording_deletes_its_copies(catalog: sa.Engine) -> None:
    with catalog.begin() as conn:
        key_id = caller_key(conn, "a" * 64)
        rec = recording_row(key_id=key_id)
        conn.execute(t.recordings.insert(), [rec, recording_row(key_id=key_id)])
        conn.execute(t.copies.insert(), [copy_row(rec["id"], key_id),
                                         copy_row(rec["id"], key_id, "training")])
    with catalog.connect() as conn:
        got = conn.execute(sa.select(t.recordings).where(t.recordings.c.id == rec["id"])).mappings().one()
        assert got["started_at"] == NOW and got["started_at"].tzinfo is not None
        assert got["redactions"] == [[1000, 5000]]
        assert got["id"] == rec["id"]
        assert conn.execute(sa.select(sa.func.count()).select_from(t.copies)).scalar() == 2

    with catalog.begin() as conn:
        conn.execute(t.recordings.delete().where(t.recordings.c.id == rec["id"]))
    with catalog.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t.copies)).scalar() == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(t.recordings)).scalar() == 1


def insert_fails(engine: sa.Engine, table: sa.Table, row: dict) -> bool:
    try:
        with engine.begin() as conn:
            conn.execute(table.insert().values(**row))
    except (sa.exc.IntegrityError, sa.exc.StatementError):
        return True
    return False


def test_constraints(catalog: sa.Engine) -> None:
    with catalog.begin() as conn:
        key_id = caller_key(conn, "a" * 64)
        rec = recording_row(key_id=key_id)
        conn.execute(t.recordings.insert().values(**rec))
        conn.execute(t.copies.insert().values(**copy_row(rec["id"], key_id)))
        # Several complaint extracts of one recording, one per reference.
        for ref in ("CPL-1", "CPL-2"):
            conn.execute(t.copies.insert().values(**copy_row(rec["id"], key_id, "complaint-extract", reason=ref)))

    # One copy per tier (the reason is '' outside extracts) and one extract per reference.
    assert insert_fails(catalog, t.copies, copy_row(rec["id"], key_id))
    assert insert_fails(catalog, t.copies, copy_row(rec["id"], key_id, "complaint-extract", reason="CPL-1"))
    assert insert_fails(catalog, t.copies, copy_row(rec["id"], key_id, "monitoring", reason="why not"))
    # Enum CHECKs (the raw SQL bypasses SQLAlchemy's own validation of the value).
    with pytest.raises(sa.exc.IntegrityError):
        with catalog.begin() as conn:
            conn.execute(sa.text("UPDATE copies SET tier = 'archive'"))
    assert insert_fails(catalog, t.recordings, recording_row(key_id=key_id, direction="sideways"))
    # Same telephony id in the same tenant: refused (ingest replays are detected by it).
    assert insert_fails(catalog, t.recordings, recording_row(key_id=key_id, external_id=rec["external_id"]))
    # A hold needs its reason, actor and time; a training copy needs its report.
    assert insert_fails(catalog, t.copies, copy_row(rec["id"], key_id, "monitoring", hold=True))
    assert insert_fails(catalog, t.copies, copy_row(rec["id"], key_id, "training", training_report=None))
    # A copy must point at a recording and a key that exist (foreign keys are on in SQLite too).
    assert insert_fails(catalog, t.copies, copy_row(uuid.uuid4(), key_id, "monitoring"))
    # Naive timestamps are refused before reaching the database.
    assert insert_fails(catalog, t.recordings, recording_row(key_id=key_id, started_at=NOW.replace(tzinfo=None)))


def test_one_live_key_per_number_and_purpose(catalog: sa.Engine) -> None:
    with catalog.begin() as conn:
        first = caller_key(conn, "b" * 64)
        conn.execute(t.caller_keys.insert().values(id=uuid.uuid4(), tenant_id="acme", number_hash="b" * 64,
                                                   purpose="hold", wrapped_key=b"k", created_at=NOW))
    assert insert_fails(catalog, t.caller_keys, dict(id=uuid.uuid4(), tenant_id="acme", number_hash="b" * 64,
                                                     wrapped_key=b"k", created_at=NOW))
    with catalog.begin() as conn:  # crypto-shred, then the number calls again: a fresh key
        conn.execute(t.caller_keys.update().where(t.caller_keys.c.id == first)
                     .values(wrapped_key=None, destroyed_at=NOW))
        caller_key(conn, "b" * 64)
    assert insert_fails(catalog, t.caller_keys, dict(id=uuid.uuid4(), tenant_id="acme", number_hash="c" * 64,
                                                     wrapped_key=None, created_at=NOW))


def test_audit_sequence_autoincrements(catalog: sa.Engine) -> None:
    with catalog.begin() as conn:
        for n in range(3):
            conn.execute(t.audit_events.insert().values(
                at=NOW, actor="ic-1", role="internal-control", action="recording:audio:stream",
                target_type="recording", target_id=str(uuid.uuid4()), outcome="allowed",
                detail={"tier": "production"}, prev_hash=None if n == 0 else f"{n - 1}" * 64, hash=f"{n}" * 64))
    with catalog.connect() as conn:
        assert list(conn.execute(sa.select(t.audit_events.c.seq).order_by("seq")).scalars()) == [1, 2, 3]


# --- query plans ------------------------------------------------------------------------

BASE = datetime(2026, 1, 1, tzinfo=timezone.utc)


def seed_volume(engine: sa.Engine, recordings: int = 20_000, numbers: int = 6_000) -> dict[str, str]:
    """~20k recordings over 90 days in 3 tenants, 200 agents in 20 teams, and ~1.1 copies each."""
    rng = random.Random(20261123)
    tenants = ["t0", "t1", "t2"]
    hashes = [f"{n:064x}" for n in range(numbers)]
    keys = [uuid.uuid4() for _ in hashes]
    recs, copies = [], []
    for i in range(recordings):
        n = rng.randrange(numbers)
        agent = rng.randrange(200)
        started = BASE + timedelta(seconds=rng.randrange(90 * 86_400))
        rec = recording_row(tenants[n % 3], hashes[n], keys[n], external_id=f"ext-{i}", agent_id=f"agent-{agent}",
                            team_id=f"team-{agent // 10}", started_at=started, created_at=started)
        recs.append(rec)
        held = rng.random() < 0.02
        hold = dict(hold=True, hold_reason="litigation", hold_actor="ic-1", hold_at=started) if held else {}
        copies.append(copy_row(rec["id"], keys[n], expires_at=started + timedelta(days=90), **hold))
        if rng.random() < 0.1:
            copies.append(copy_row(rec["id"], keys[n], "monitoring", expires_at=started + timedelta(days=120)))
    with engine.begin() as conn:
        conn.execute(t.tenants.insert(), [dict(id=x, name=x, created_at=BASE) for x in tenants])
        conn.execute(t.caller_keys.insert(), [dict(id=k, tenant_id=tenants[n % 3], number_hash=h,
                                                   wrapped_key=b"k" * 40, created_at=BASE)
                                              for n, (h, k) in enumerate(zip(hashes, keys))])
        conn.execute(t.recordings.insert(), recs)
        conn.execute(t.copies.insert(), copies)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("ANALYZE")
    probe = recs[123]
    return {"tenant": probe["tenant_id"], "number_hash": probe["number_hash"]}


def explain(conn: sa.Connection, stmt: sa.Select) -> tuple[str, str]:
    sql = str(stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    plan = "\n".join(conn.exec_driver_sql(f"EXPLAIN (FORMAT TEXT) {sql}").scalars())
    return sql, plan


class _ProbeHash:
    """``KeyRing.number_hash`` answering the seeded probe's hash (the seed has no real keys)."""

    def __init__(self, number_hash: str) -> None:
        self.hash = number_hash

    def number_hash(self, tenant: str, form: str) -> str:
        return self.hash


def search_queries(probe: dict[str, str]) -> dict:
    """A search's page (``access.api.search.scoped``, keyset cursor, LIMIT) per filter: one index range each."""
    from access.api.search import Cursor, Filters, after, scoped
    from access.policy import User
    from core.vocabulary import Relation, Role

    control = User("ic", Role.INTERNAL_CONTROL, frozenset({probe["tenant"]}))
    manager = User("m", Role.MANAGER, frozenset({"t1"}), frozenset({("t1", "team-3", Relation.MANAGER)}))
    deep = Cursor(BASE + timedelta(days=45), uuid.UUID(int=0))
    keys = _ProbeHash(probe["number_hash"])

    def page(user, filters, cursor=None) -> sa.Select:
        return scoped(None, keys, user, filters).where(*after(cursor)).limit(51)

    month = dict(start=BASE + timedelta(days=30), end=BASE + timedelta(days=60))
    return {
        "(s1) search: a tenant, newest first, deep": (
            page(control, Filters(), deep), {"recordings": ["ix_recordings_tenant_started_id"]}),
        "(s2) search: by number": (
            page(control, Filters(number="+33612345678")), {"recordings": ["ix_recordings_tenant_number_started_id"]}),
        "(s3) search: by agent": (
            page(control, Filters(agent="agent-7"), deep), {"recordings": ["ix_recordings_tenant_agent_started_id"]}),
        "(s4) search: manager, by team over a month": (
            page(manager, Filters(team="team-3", **month)), {"recordings": ["ix_recordings_tenant_team_started_id"]}),
    }


def test_lookups_use_their_indexes_on_postgres(pg_engine: sa.Engine) -> None:
    upgrade(pg_engine)
    probe = seed_volume(pg_engine)
    r, c = t.recordings, t.copies
    by_recordings = sa.select(c.c.id, c.c.tier, c.c.object_key).join(r, c.c.recording_id == r.c.id)
    queries = {
        "(a) copies expired before T and not held (sweeper)": (
            sa.select(c.c.id, c.c.object_key).where(c.c.hold == sa.false(),
                                                    c.c.expires_at < BASE + timedelta(days=91)),
            {"copies": ["ix_copies_expires_not_held"]}),
        "(b) copies of a caller number (data-subject requests)": (
            by_recordings.where(r.c.tenant_id == probe["tenant"], r.c.number_hash == probe["number_hash"]),
            {"recordings": ["ix_recordings_tenant_number_started_id"], "copies": ["uq_copies_recording_id_tier_reason"]}),
        "(c1) copies of an agent in a week": (
            by_recordings.where(r.c.tenant_id == "t1", r.c.agent_id == "agent-7",
                                r.c.started_at >= BASE + timedelta(days=10),
                                r.c.started_at < BASE + timedelta(days=17)),
            {"recordings": ["ix_recordings_tenant_agent_started_id"],
             "copies": ["uq_copies_recording_id_tier_reason"]}),
        "(c2) copies of a team in a day": (
            by_recordings.where(r.c.tenant_id == "t2", r.c.team_id == "team-3",
                                r.c.started_at >= BASE + timedelta(days=20),
                                r.c.started_at < BASE + timedelta(days=21)),
            {"recordings": ["ix_recordings_tenant_team_started_id"],
             "copies": ["uq_copies_recording_id_tier_reason"]}),
    }
    queries.update(search_queries(probe))
    report = []
    with pg_engine.connect() as conn:
        counts = {name: conn.execute(sa.select(sa.func.count()).select_from(sa.table(name))).scalar()
                  for name in ("recordings", "copies")}
        report.append(f"# PostgreSQL plans on {counts['recordings']} recordings, {counts['copies']} copies\n")
        plans = {}
        for title, (stmt, _) in queries.items():
            sql, plans[title] = explain(conn, stmt)
            report.append(f"## {title}\n{sql}\n\n{plans[title]}\n")
    text = "\n".join(report)
    print("\n" + text)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "explain_plans.txt").write_text(text)

    for title, (_, expected) in queries.items():
        plan = plans[title]
        for table, index_names in expected.items():
            assert f"Seq Scan on {table}" not in plan, f"{title}: sequential scan of {table}\n{plan}"
            for index in index_names:
                assert any(f"{scan} using {index} on {table}" in plan or f"{scan} on {index}" in plan
                           for scan in ("Index Scan", "Index Scan Backward", "Index Only Scan",
                                        "Index Only Scan Backward", "Bitmap Index Scan")), \
                    f"{title}: {index} not used\n{plan}"
