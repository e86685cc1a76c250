"""Catalog rows and encrypted copies for storage and lifecycle tests."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from storage.catalog import tables as t
from storage.copies import object_key_for, put_encrypted, upsert_copy
from storage.keys import KeyRing

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
FRAME = 1024  # small frames so a few KB of audio spans many of them


def new_recording(conn, keys: KeyRing, number: str = "+33612345678") -> tuple[uuid.UUID, str]:
    rid = uuid.uuid4()
    number_hash = keys.number_hash("acme", number)
    caller = keys.caller_key(conn, tenant="acme", number_hash=number_hash)
    conn.execute(t.recordings.insert().values(
        id=rid, tenant_id="acme", external_id=f"ext-{rid}", started_at=NOW, direction="inbound",
        caller_number_sealed=keys.seal_number(caller, tenant="acme", recording_id=rid, e164=number),
        caller_key_id=caller.id, number_hash=number_hash, agent_id="a1", team_id="t1", duration_ms=1000,
        audio_format="opus", channels=1, redactions=[], restricted=False, created_at=NOW, content_sha256="0" * 64))
    return rid, number_hash


def store_copy(engine, store, keys, bucket, audio: bytes, *, tier="production", rid=None, number_hash=None,
               expires_at=None, reason="", training_report=None):
    with engine.begin() as conn:
        if rid is None:
            rid, number_hash = new_recording(conn, keys)
        key = object_key_for("acme", rid, tier, reason)
        caller = keys.caller_key(conn, tenant="acme", number_hash=number_hash)
        stored = put_encrypted(conn, store, keys, caller=caller, bucket=bucket,
                               object_key=key, audio=audio, tags={"tier": tier}, frame_size=FRAME)
        copy_id = upsert_copy(conn, recording_id=rid, tier=tier, stored=stored, bucket=bucket,
                              expires_at=expires_at or NOW + timedelta(days=90), created_by="test", reason=reason,
                              training_report=training_report)
    return rid, number_hash, copy_id, key


