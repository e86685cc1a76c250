"""Catalog rows and encrypted copies for the storage, lifecycle and API tests.

Two kinds: sealed rows and copies the way ingest leaves them (``new_recording``, ``store_copy``:
real keys, real MinIO objects), and plain rows with random key material for the catalog's own
tests (``caller_key``, ``recording_row``, ``copy_row``: constraints and migrations, no crypto).
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from storage.catalog import tables as t
from storage.copies import object_key_for, put_encrypted, upsert_copy
from storage.keys import KeyRing
from testbed.catalog import NUMBER, add_recording

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
FRAME = 1024  # small frames so a few KB of audio spans many of them


def new_recording(conn, keys: KeyRing, number: str = NUMBER, **fields) -> tuple[uuid.UUID, str]:
    """A recording of ``number`` (tenant acme, agent a1, team t1) started at ``NOW``; (id, number hash)."""
    return add_recording(conn, keys, number, **{"started": NOW, **fields})


def store_copy(engine, store, keys, bucket, audio: bytes, *, tier="production", rid=None, number_hash=None,
               expires_at=None, reason="", training_report=None, tenant="acme"):
    """``audio`` stored encrypted as a copy of ``rid`` (a new recording if None); (recording id,
    number hash, copy id, object key)."""
    with engine.begin() as conn:
        if rid is None:
            rid, number_hash = new_recording(conn, keys, tenant=tenant)
        key = object_key_for(tenant, rid, tier, reason)
        caller = keys.caller_key(conn, tenant=tenant, number_hash=number_hash)
        stored = put_encrypted(conn, store, keys, caller=caller, bucket=bucket,
                               object_key=key, audio=audio, tags={"tier": tier}, frame_size=FRAME)
        copy_id = upsert_copy(conn, recording_id=rid, tier=tier, stored=stored, bucket=bucket,
                              expires_at=expires_at or NOW + timedelta(days=90), created_by="test", reason=reason,
                              training_report=training_report)
    return rid, number_hash, copy_id, key


def ranges_read(store, read) -> list:
    """The ``Range`` of each GET ``read()`` makes through ``store`` (None: a whole-object GET)."""
    ranges = []
    real_get = store.client.get_object
    store.client.get_object = lambda **kw: ranges.append(kw.get("Range")) or real_get(**kw)
    try:
        read()
    finally:
        store.client.get_object = real_get
    return ranges


# -- plain rows (no crypto) for the catalog's own tests ---------------------------------------------

def caller_key(conn: sa.Connection, number_hash: str, tenant: str = "acme") -> uuid.UUID:
    key_id = uuid.uuid4()
    conn.execute(t.caller_keys.insert().values(id=key_id, tenant_id=tenant, number_hash=number_hash,
                                               wrapped_key=os.urandom(40), created_at=NOW))
    return key_id


def recording_row(tenant: str = "acme", number_hash: str = "a" * 64, key_id: uuid.UUID | None = None,
                  **overrides) -> dict:
    rid = uuid.uuid4()
    row = dict(id=rid, tenant_id=tenant, external_id=f"ext-{rid}", started_at=NOW, direction="inbound",
               caller_number_sealed=os.urandom(40), caller_key_id=key_id, number_hash=number_hash, agent_id="agent-1",
               team_id="team-1",
               duration_ms=61_000, audio_format="opus", channels=2, redactions=[[1000, 5000]], restricted=False,
               created_at=NOW, content_sha256="c" * 64)
    return row | overrides


def copy_row(recording_id: uuid.UUID, key_id: uuid.UUID, tier: str = "production", **overrides) -> dict:
    cid = uuid.uuid4()
    row = dict(id=cid, recording_id=recording_id, tier=tier, object_key=f"acme/{recording_id}/{cid}.cve",
               bucket="callvault-recordings", size_bytes=12_345, stored_sha256="d" * 64,
               wrapped_data_key=os.urandom(60), caller_key_id=key_id, frame_size=65_536, created_at=NOW,
               created_by="ingest", expires_at=NOW + timedelta(days=90), reason="", hold=False,
               hold_reason=None, hold_actor=None, hold_at=None,
               training_report="good objection handling" if tier == "training" else None)
    return row | overrides
