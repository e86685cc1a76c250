"""The bad-input corpus through ``ingest.service.ingest`` in process: real MinIO, PostgreSQL
and ffmpeg, no Kafka.  Fast enough to show every case's outcome at once; the worker's own
handling (dead letters, headers, metrics) is in ``test_ingest_e2e.py``."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Iterator

import pytest
import sqlalchemy as sa

from ingest.exceptions import IngestError
from ingest.service import IngestDeps, Outcome, ingest
from ingest.settings import IngestSettings
from storage.admin import init_buckets
from storage.catalog import tables as t
from storage.catalog.db import make_engine
from storage.keys import KeyRing
from storage.objectstore import ObjectStore
from tests.bad_input_corpus import CORPUS, LIMITS, TENANT, World, good, leaked

pytestmark = pytest.mark.integration
NOW = datetime.now(timezone.utc).replace(microsecond=0)


@pytest.fixture
def deps(storage_settings, pg_schema_url) -> Iterator[IngestDeps]:
    init_buckets(storage_settings, say=lambda _m: None)
    engine = make_engine(pg_schema_url, echo=False)
    with engine.begin() as conn:
        conn.execute(t.tenants.insert().values(id=TENANT, name="Acme", created_at=NOW))
    yield IngestDeps(engine=engine, store=ObjectStore.from_settings(storage_settings), keys=KeyRing(os.urandom(32)),
                     storage=storage_settings, settings=IngestSettings(**LIMITS), clock=lambda: NOW)
    engine.dispose()


def test_every_bad_input_is_refused_with_its_reason_and_good_calls_still_pass(deps: IngestDeps) -> None:
    landing = deps.storage.landing_bucket
    world = World(now=NOW, landing_bucket=landing, put=lambda key, data: deps.store.put(landing, key, data))
    assert ingest(good(world, "good-before"), deps).outcome is Outcome.STORED
    seen: dict[str, tuple] = {}
    for case in CORPUS:
        blob = case.build(world)
        try:
            result = ingest(blob, deps)
        except IngestError as exc:
            seen[case.name] = (str(exc.code), case.says in str(exc), leaked(str(exc), blob))
            if seen[case.name] != (case.reason, True, []):
                seen[case.name] += (str(exc),)  # shown by the assertion below
        else:
            seen[case.name] = (f"accepted: {result.outcome}",)
    assert seen == {case.name: (case.reason, True, []) for case in CORPUS}
    assert ingest(good(world, "good-after"), deps).outcome is Outcome.STORED
    with deps.engine.connect() as conn:
        stored = conn.execute(sa.select(t.recordings.c.external_id)).scalars().all()
    assert sorted(stored) == ["good-after", "good-before"]
