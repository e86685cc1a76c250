"""Data-subject rights on real MinIO with the catalog on SQLite and PostgreSQL, and objection
end to end through Kafka and a real worker."""

from __future__ import annotations

import csv
import io
import json
import os
import time
import zipfile
from datetime import timedelta

import pytest
import sqlalchemy as sa

from access.exceptions import BadRequest
from access.policy import Target, User, decide
from access.subjects import Actor, erase, export, object_to_recording, rectify, render_export_zip, restrict
from core.vocabulary import Action, Role
from lifecycle.holds import set_hold
from storage.audit import verify
from storage.catalog import tables as t
from storage.copies import read_copy
from storage.crypto import decrypt_bytes, encode_context
from storage.exceptions import KeyDestroyedError
from storage.keys import KeyRing
from storage.ledger import ErasureLedger
from tests.support.catalog import NOW, new_recording, store_copy

pytestmark = pytest.mark.integration
IC = Actor("ic-1")
NUMBER = "+33612345678"


def calls_of(catalog, store, keys, bucket, number=NUMBER, n=2, tiers=("production",)):
    out = []
    for _ in range(n):
        with catalog.begin() as conn:
            rid, nh = new_recording(conn, keys, number)
        for tier in tiers:
            out.append(store_copy(catalog, store, keys, bucket, os.urandom(3000), tier=tier, rid=rid, number_hash=nh,
                                  training_report="r" if tier == "training" else None))
    return out


def test_erasure_reaches_every_copy_and_version_and_keeps_held_ones_readable(
        catalog, store, keys, ledger, scratch_bucket, minio):
    from minio.commonconfig import ENABLED
    from minio.versioningconfig import VersioningConfig

    minio.minio_client().set_bucket_versioning(scratch_bucket, VersioningConfig(ENABLED))
    mine = calls_of(catalog, store, keys, scratch_bucket, n=3, tiers=("production", "monitoring"))
    other = calls_of(catalog, store, keys, scratch_bucket, number="+33699999999", n=1)
    held_rid, _, held_copy, _ = mine[0]
    with catalog.begin() as conn:
        set_hold(conn, store, copy_ids=[held_copy], reason="litigation L-1", actor="ic-1", now=NOW, mirror=False)
        old = conn.execute(sa.select(t.copies).where(t.copies.c.id == mine[2][2])).mappings().one()
    old_version = store.client.list_object_versions(Bucket=scratch_bucket, Prefix=old["object_key"])["Versions"][0]
    backup_bytes = store.get(scratch_bucket, old["object_key"], version_id=old_version["VersionId"])

    with catalog.begin() as conn:  # any usual format finds the same person
        report = erase(conn, store, keys, ledger, tenant="acme", numbers=["06 12 34 56 78"], actor=IC, now=NOW)
    assert len(report.erased_copies) == 5 and report.keys_destroyed == 1
    assert report.kept_copies == [{"copy_id": str(held_copy), "recording_id": str(held_rid),
                                   "tier": "production", "hold_reason": "litigation L-1"}]
    with catalog.connect() as conn:
        left = conn.execute(sa.select(t.copies.c.id)).scalars().all()
        assert set(left) == {held_copy, other[0][2]}
        assert conn.execute(sa.select(sa.func.count()).select_from(t.recordings)).scalar() == 2
        assert read_copy(conn, store, keys, held_copy)  # held: still readable under the hold key
        assert read_copy(conn, store, keys, other[0][2])  # someone else's call: untouched
        # An old version restored from a backup, with the catalog row a backup would hold: dead.
        with pytest.raises(KeyDestroyedError):
            data_key = keys.unwrap_data_key(conn, caller_key_id=old["caller_key_id"],
                                            wrapped=old["wrapped_data_key"], object_key=old["object_key"])
            decrypt_bytes(backup_bytes, data_key=data_key, aad=encode_context("callvault-copy", old["object_key"]))
        entry = conn.execute(sa.select(t.audit_events).where(t.audit_events.c.action == "subject:erase")).mappings().one()
        assert "612345678" not in json.dumps(entry["detail"]) + entry["target_id"]
        assert verify(conn).ok
    versions = store.client.list_object_versions(Bucket=scratch_bucket)
    erased_keys = {c["copy_id"] for c in report.erased_copies}
    assert not any(v["Key"] == old["object_key"] for v in versions.get("Versions", []))
    assert erased_keys


def test_restriction_lets_only_internal_control_play_until_lifted(catalog, store, keys, ledger, scratch_bucket):
    calls_of(catalog, store, keys, scratch_bucket, n=2)
    with catalog.begin() as conn:
        assert restrict(conn, keys, ledger, tenant="acme", numbers=["0612345678"], actor=IC, now=NOW) == 2
        flags = conn.execute(sa.select(t.recordings.c.restricted)).scalars().all()
    assert flags == [True, True]
    manager = User("m", Role.MANAGER, frozenset({"acme"}), frozenset({("acme", "t1", "manager")}))
    ic = User("ic", Role.INTERNAL_CONTROL, frozenset({"acme"}))
    target = Target("acme", "production", "a1", "t1", restricted=True)
    assert not decide(manager, Action.STREAM, target, now=NOW).allowed
    assert decide(ic, Action.STREAM, target, now=NOW).allowed
    with catalog.begin() as conn:
        restrict(conn, keys, ledger, tenant="acme", numbers=["+33 6 12 34 56 78"], actor=IC, now=NOW, lift=True)
        assert conn.execute(sa.select(t.recordings.c.restricted)).scalars().all() == [False, False]


def test_rectifying_a_number_moves_the_keys_and_audits_before_after(catalog, store, keys, ledger, scratch_bucket):
    [(rid, old_hash, copy_id, _)] = calls_of(catalog, store, keys, scratch_bucket, n=1)
    with catalog.begin() as conn:
        rectify(conn, keys, tenant="acme", recording_ids=[rid], actor=IC, now=NOW, caller_number="06 22 33 44 55",
                agent_id="agent-9")
        row = conn.execute(sa.select(t.recordings).where(t.recordings.c.id == rid)).mappings().one()
        assert (keys.open_number(conn, row), row["agent_id"]) == ("+33622334455", "agent-9")
        # Erasing the *old* number no longer touches the call; erasing the new one does.
        assert erase(conn, store, keys, ledger, tenant="acme", numbers=[NUMBER], actor=IC, now=NOW).erased_copies == []
        assert read_copy(conn, store, keys, copy_id)
        entry = conn.execute(sa.select(t.audit_events).where(t.audit_events.c.action == "subject:rectify")
                             ).mappings().one()
        assert entry["detail"]["before"]["agent_id"] == "a1" and entry["detail"]["after"]["agent_id"] == "agent-9"
        assert entry["detail"]["before"]["number_hash"] == old_hash[:16]
        assert "622334455" not in json.dumps(entry["detail"])
        erased = erase(conn, store, keys, ledger, tenant="acme", numbers=["0622334455"], actor=IC, now=NOW)
        assert [c["copy_id"] for c in erased.erased_copies] == [str(copy_id)]


@pytest.mark.parametrize("field", ["agent_id", "team_id"])
def test_rectifying_to_an_agent_or_team_telephony_could_not_send_is_refused(catalog, store, keys, scratch_bucket,
                                                                             field):
    """Ingest refuses an agent or team id outside ^[A-Za-z0-9._:@-]{1,128}$; rectification may not write one."""
    [(rid, _, _, _)] = calls_of(catalog, store, keys, scratch_bucket, n=1)
    with catalog.begin() as conn:
        with pytest.raises(BadRequest, match="'bad agent!'"):
            rectify(conn, keys, tenant="acme", recording_ids=[rid], actor=IC, now=NOW, **{field: "bad agent!"})
        row = conn.execute(sa.select(t.recordings).where(t.recordings.c.id == rid)).mappings().one()
    assert (row["agent_id"], row["team_id"]) != ("bad agent!", "bad agent!") and row[field] != "bad agent!"


def test_export_is_a_36_month_extract_rendered_as_zip_with_manifests(catalog, store, keys, scratch_bucket):
    calls_of(catalog, store, keys, scratch_bucket, n=2, tiers=("production", "monitoring"))
    calls_of(catalog, store, keys, scratch_bucket, number="+33698765432", n=1)
    with catalog.begin() as conn:
        result = export(conn, store, keys, tenant="acme", numbers=["06.12.34.56.78", "0698765432"], actor=IC,
                        now=NOW, request_id="req-42")
        extracts = conn.execute(sa.select(t.copies).where(t.copies.c.reason == "gdpr-request:req-42")).mappings().all()
        payload = render_export_zip(conn, store, keys, tenant="acme", request_id="req-42")
        originals = {c["recording_id"]: read_copy(conn, store, keys, c["id"]) for c in extracts}
    assert result.recordings == 3 and len(extracts) == 3
    assert all(e["tier"] == "complaint-extract" and e["expires_at"] == NOW.replace(year=NOW.year + 3)
               for e in extracts)
    zf = zipfile.ZipFile(io.BytesIO(payload))
    audio = [n for n in zf.namelist() if n.startswith("audio/")]
    assert len(audio) == 3
    assert sorted(zf.read(n) for n in audio) == sorted(originals.values())
    manifest = json.loads(zf.read("manifest.json"))["copies"]
    rows = list(csv.DictReader(io.StringIO(zf.read("manifest.csv").decode())))
    assert len(manifest) == len(rows) == 2 * 3 + 1 * 2  # every copy of every exported call, extracts included
    assert {r["tier"] for r in rows} == {"production", "monitoring", "complaint-extract"}
    assert all(r["retention_until"] for r in rows)
    assert "+33612345678" not in json.dumps(manifest)  # the subject knows their number; the file need not


def test_objection_erases_existing_calls_and_ingest_stores_nothing_more(pipeline):
    from datetime import datetime, timezone

    from ingest.producer import Call
    from testbed.audio import sine_wav

    now = datetime.now(timezone.utc)
    pipeline.push(Call(audio=sine_wav(1.0), tenant="acme", agent_id="a1", caller_number="0612345678",
                       started_at=now - timedelta(minutes=1), recording_id="before-objection"))
    pipeline.wait_for(lambda e: e.get("type") == "stored", count=1)
    keys = KeyRing.from_settings(pipeline.storage)
    with pipeline.engine.begin() as conn:
        report = object_to_recording(conn, pipeline.store, keys, ErasureLedger.from_settings(pipeline.store, pipeline.storage), tenant="acme", numbers=["+33 6 12 34 56 78"],
                                     actor=IC, now=now)
    assert len(report.erased_recordings) == 1
    pipeline.push(Call(audio=sine_wav(1.0), tenant="acme", agent_id="a1", caller_number="06-12-34-56-78",
                       started_at=now, recording_id="after-objection"))
    event = pipeline.wait_for(lambda e: e.get("external_id") == "after-objection", count=1)[0]
    assert event["type"] == "suppressed"
    assert pipeline.count(t.recordings) == 0
    assert list(pipeline.store.list(pipeline.storage.recordings_bucket)) == []


def test_erasing_a_number_with_1000_copies_and_exporting_one_with_100(pg_engine, store, keys, ledger,
                                                                     scratch_bucket):
    """On PostgreSQL; timings for the closing note are printed, not asserted."""
    from concurrent.futures import ThreadPoolExecutor

    from storage.catalog.migrate import upgrade

    catalog = pg_engine
    upgrade(catalog)
    with catalog.begin() as conn:
        conn.execute(t.tenants.insert().values(id="acme", name="Acme", created_at=NOW))

    def one(i):
        number = NUMBER if i < 1000 else "+33698700000"
        with catalog.begin() as conn:
            rid, nh = new_recording(conn, keys, number)
        return store_copy(catalog, store, keys, scratch_bucket, b"x" * 2000, rid=rid, number_hash=nh)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(1100)))
    t0 = time.monotonic()
    with catalog.begin() as conn:
        report = erase(conn, store, keys, ledger, tenant="acme", numbers=[NUMBER], actor=IC, now=NOW)
    erase_s = time.monotonic() - t0
    assert len(report.erased_copies) == 1000
    t0 = time.monotonic()
    with catalog.begin() as conn:
        result = export(conn, store, keys, tenant="acme", numbers=["+33698700000"], actor=IC, now=NOW)
        payload = render_export_zip(conn, store, keys, tenant="acme", request_id=result.request_id)
    export_s = time.monotonic() - t0
    assert result.recordings == 100 and len(zipfile.ZipFile(io.BytesIO(payload)).namelist()) == 102
    print(f"\nerase 1,000 copies: {erase_s:.2f} s; export 100 recordings (extracts + ZIP): {export_s:.2f} s")
