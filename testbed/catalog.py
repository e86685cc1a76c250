"""Catalog rows the way ingest writes them, without ingesting: a recording whose caller number
is sealed under its caller's key (created on first use), ready for copies."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from storage.catalog import tables as t
from storage.keys import KeyRing

NUMBER = "+33612345678"


def add_recording(conn, keys: KeyRing, number: str = NUMBER, *, tenant: str = "acme", agent: str = "a1",
                  team: str | None = "t1", started: datetime | None = None, created: datetime | None = None,
                  duration_ms: int = 1000, redactions: list | None = None, restricted: bool = False,
                  external_id: str | None = None) -> tuple[uuid.UUID, str]:
    """Insert one recording of ``number``; (its id, the number's hash). ``created`` defaults to
    ``started``, which defaults to now."""
    rid = uuid.uuid4()
    started = started or datetime.now(timezone.utc)
    number_hash = keys.number_hash(tenant, number)
    caller = keys.caller_key(conn, tenant=tenant, number_hash=number_hash)
    conn.execute(t.recordings.insert().values(
        id=rid, tenant_id=tenant, external_id=external_id or f"ext-{rid}", started_at=started, direction="inbound",
        caller_number_sealed=keys.seal_number(caller, tenant=tenant, recording_id=rid, e164=number),
        caller_key_id=caller.id, number_hash=number_hash, agent_id=agent, team_id=team, duration_ms=duration_ms,
        audio_format="opus", channels=1, redactions=redactions or [], restricted=restricted,
        restricted_at=started if restricted else None, created_at=created or started, content_sha256="0" * 64))
    return rid, number_hash
