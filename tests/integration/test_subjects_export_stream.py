"""The data-subject export ZIP is streamed: entry by entry, each extract decrypted as it is read.

Functional promises here (valid ZIP64, stored entries, audio byte-exact, manifest, a damaged
object aborts without a complete-looking ZIP, the CLI writes the file only on success), plus one
structural memory bound that holds by a wide margin. The memory *ratio* (10 vs 100
recordings, in the API process) is measured by ``bench/export_playback.py``.
"""

from __future__ import annotations

import io
import json
import os
import tracemalloc
import zipfile
from contextlib import nullcontext

import pytest
import sqlalchemy as sa

from access.subjects import Actor, export, plan_export_zip, render_export_zip, stream_export_zip
from storage.catalog import tables as t
from storage.crypto import DecryptionError
from storage.exceptions import CatalogIntegrityError
from tests.integration.catalog_helpers import NOW, new_recording, store_copy
from tests.integration.test_api import world  # noqa: F401 - the API test world fixture

pytestmark = pytest.mark.integration
IC = Actor("ic-1")
NUMBER = "+33612345678"


def _calls(catalog, store, keys, bucket, n: int, size: int, number: str = NUMBER) -> dict:
    audio = {}
    for _ in range(n):
        with catalog.begin() as conn:
            rid, nh = new_recording(conn, keys, number)
        audio[rid] = os.urandom(size)
        store_copy(catalog, store, keys, bucket, audio[rid], rid=rid, number_hash=nh)
    return audio


def _export(catalog, store, keys, number: str = NUMBER, request_id: str = "req-1"):
    with catalog.begin() as conn:
        export(conn, store, keys, tenant="acme", numbers=[number], actor=IC, now=NOW, request_id=request_id)
        return plan_export_zip(conn, tenant="acme", request_id=request_id)


def test_streamed_zip_is_zip64_stored_and_byte_exact(catalog, store, keys, scratch_bucket):
    audio = _calls(catalog, store, keys, scratch_bucket, n=3, size=200_003)  # several 64 KiB frames, a short last
    plan = _export(catalog, store, keys)
    chunks = list(stream_export_zip(plan, store, keys, catalog.connect))
    assert max(len(c) for c in chunks) < 400_000 and len(chunks) > 2  # pieces, not files
    zf = zipfile.ZipFile(io.BytesIO(b"".join(chunks)))
    assert zf.testzip() is None
    infos = {i.filename: i for i in zf.infolist()}
    assert [e.name for e in plan.entries] == [n for n in infos if n.startswith("audio/")]
    assert all(i.compress_type == zipfile.ZIP_STORED for i in infos.values())
    by_recording = {n.rsplit("_", 1)[1].split(".")[0]: zf.read(n) for n in infos if n.startswith("audio/")}
    assert by_recording == {str(rid): data for rid, data in audio.items()}
    manifest = json.loads(zf.read("manifest.json"))
    assert manifest["request_id"] == "req-1" and len(manifest["copies"]) == 3 * 2  # production + extract
    assert {c["audio_file"] for c in manifest["copies"]} - {""} == {e.name for e in plan.entries}
    assert plan.audio_bytes == 3 * 200_003


def test_a_damaged_object_aborts_the_stream_without_a_central_directory(catalog, store, keys, scratch_bucket):
    _calls(catalog, store, keys, scratch_bucket, n=2, size=150_000)
    plan = _export(catalog, store, keys)
    with catalog.connect() as conn:
        row = conn.execute(sa.select(t.copies).where(t.copies.c.id == plan.entries[1].copy_id)).mappings().one()
    blob = bytearray(store.get(row["bucket"], row["object_key"]))
    blob[-100] ^= 1  # the last frame of the second file
    store.put(row["bucket"], row["object_key"], bytes(blob))
    got = bytearray()
    with pytest.raises(DecryptionError):
        for chunk in stream_export_zip(plan, store, keys, catalog.connect):
            got += chunk
    assert len(got) > 150_000  # the first file went out ...
    with pytest.raises(zipfile.BadZipFile):  # ... but what went out is not a ZIP anyone can mistake for whole
        zipfile.ZipFile(io.BytesIO(bytes(got)))


def test_a_replaced_object_fails_its_catalog_checksum_at_the_end_of_its_file(catalog, store, keys, scratch_bucket):
    _calls(catalog, store, keys, scratch_bucket, n=1, size=10_000)
    plan = _export(catalog, store, keys)
    with catalog.begin() as conn:
        conn.execute(t.copies.update().where(t.copies.c.id == plan.entries[0].copy_id).values(stored_sha256="0" * 64))
    with pytest.raises(CatalogIntegrityError):
        list(stream_export_zip(plan, store, keys, catalog.connect))


@pytest.mark.parametrize("catalog", ["postgres"], indirect=True)
def test_streaming_memory_does_not_hold_the_export(catalog, store, keys, scratch_bucket):
    """Peak traced allocations while streaming 32 x 400 kB: a few chunks and buffers (~1.4 MB), far below
    the 12.8 MB of audio (building the ZIP in memory holds all of it, twice)."""
    _calls(catalog, store, keys, scratch_bucket, n=32, size=400_000)
    plan = _export(catalog, store, keys)
    for _ in stream_export_zip(plan, store, keys, catalog.connect):  # warm: botocore's models, pools
        pass
    tracemalloc.start()
    try:
        written = sum(len(c) for c in stream_export_zip(plan, store, keys, catalog.connect))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"\npeak traced {peak} B for {plan.audio_bytes} B of audio")
    assert written > plan.audio_bytes == 32 * 400_000
    assert peak < plan.audio_bytes / 4, f"peak {peak} B for {plan.audio_bytes} B of audio"


def test_render_on_the_export_transaction_matches_the_stream(catalog, store, keys, scratch_bucket):
    audio = _calls(catalog, store, keys, scratch_bucket, n=2, size=70_000)
    with catalog.begin() as conn:  # the extracts are not committed yet: the CLI's case
        export(conn, store, keys, tenant="acme", numbers=[NUMBER], actor=IC, now=NOW, request_id="req-2")
        payload = render_export_zip(conn, store, keys, tenant="acme", request_id="req-2")
        plan = plan_export_zip(conn, tenant="acme", request_id="req-2")
        streamed = b"".join(stream_export_zip(plan, store, keys, lambda: nullcontext(conn)))
    for data in (payload, streamed):
        zf = zipfile.ZipFile(io.BytesIO(data))
        assert sorted(zf.read(n) for n in zf.namelist() if n.startswith("audio/")) == sorted(audio.values())


def test_the_cli_streams_the_zip_to_its_file(storage_settings, pg_schema_url, tmp_path):
    import subprocess
    import sys

    from tests.integration.pipeline import service_env
    from tests.support.vault import TENANT, Vault

    from access.identities import add_user

    vault = Vault.build(storage_settings, pg_schema_url)
    try:
        with vault.engine.begin() as conn:  # the CLI's --actor is a registered user the policy allows
            add_user(conn, user_id="control-1", role="internal-control", tenants=[TENANT])
        for _ in range(2):
            vault.call(NUMBER)
        out = tmp_path / "subject.zip"
        done = subprocess.run([sys.executable, "-m", "callvault.cli", "subjects", "export", NUMBER, "--tenant", TENANT,
                               "--actor", "control-1", "--out", str(out)], env=service_env(vault.storage, vault.url),
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        assert NUMBER not in done.stdout + done.stderr
        zf = zipfile.ZipFile(out)
        assert zf.testzip() is None and len([n for n in zf.namelist() if n.startswith("audio/")]) == 2
        assert [p.name for p in tmp_path.iterdir()] == ["subject.zip"]  # the .part file was renamed
    finally:
        vault.dispose()


def test_object_store_stream_reads_in_chunks_and_translates_a_missing_object(store, scratch_bucket):
    from storage.exceptions import ObjectNotFound

    data = os.urandom(600_000)
    store.put(scratch_bucket, "k", data)
    chunks = list(store.stream(scratch_bucket, "k", chunk_size=256 * 1024))
    assert b"".join(chunks) == data and len(chunks) >= 3 and max(map(len, chunks)) <= 256 * 1024
    with pytest.raises(ObjectNotFound):
        store.stream(scratch_bucket, "missing")


def test_api_download_of_an_export_whose_object_is_gone_is_a_clean_error_audited_as_failed(world):  # noqa: F811
    made = world.post("/subjects/export", "control-1", json={"tenant": "acme", "numbers": ["+33 6 12 34 56 78"]})
    assert made.status_code == 200, made.text
    with world.engine.connect() as conn:
        extract = conn.execute(sa.select(t.copies).where(
            t.copies.c.reason == f"gdpr-request:{made.json()['request_id']}")).mappings().one()
    world.services.store.delete(extract["bucket"], extract["object_key"])
    got = world.client.get(made.json()["download_url"])
    assert got.status_code >= 400 and got.headers["content-type"].startswith("application/json")
    rows = world.audit_rows(action="subject:export:download")
    assert [r["outcome"] for r in rows] == ["failed"] and rows[0]["detail"]["files"] == 1


def test_an_extract_of_a_damaged_source_fails_and_leaves_no_copy(catalog, store, keys, scratch_bucket):
    from lifecycle.copies import create_copy

    audio = _calls(catalog, store, keys, scratch_bucket, n=1, size=50_000)
    (rid,) = audio
    with catalog.connect() as conn:
        source = conn.execute(sa.select(t.copies).where(t.copies.c.recording_id == rid)).mappings().one()
    blob = bytearray(store.get(source["bucket"], source["object_key"]))
    blob[-5] ^= 1
    store.put(source["bucket"], source["object_key"], bytes(blob))
    with pytest.raises(DecryptionError), catalog.begin() as conn:
        create_copy(conn, store, keys, recording_id=rid, tier="complaint-extract", actor="ic-1", now=NOW,
                    reason="gdpr-request:x")
    with catalog.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t.copies)).scalar() == 1
    assert [o.key for o in store.list(scratch_bucket)] == [source["object_key"]]
