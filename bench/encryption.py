"""Client-side encryption overhead (issue 3's closing note), against real MinIO.

For payloads of 120 KiB (a 1-minute Opus call is ~120 KB), 1 MiB, 16 MiB and 64 MiB:

- stored bytes with vs without client-side encryption (sizes the server reports: HEAD);
- put and get throughput, MB/s (10^6 bytes): ``ObjectStore.put/get`` of the raw bytes (the
  baseline) vs ``put_encrypted`` + ``read_copy`` (catalog on a migrated SQLite file, one
  tenant and one recording row per copy, as ``tests/integration/test_copies.py`` does);
  ``read_copy`` includes the catalog lookup, the key unwrap, the SHA-256 check and decryption;
- the pure CPU cost of ``encrypt_bytes`` / ``decrypt_bytes`` (and SHA-256, for context);
- a ranged read of 64 KiB from the middle of a 64 MiB object: one raw ranged GET vs
  ``read_copy_range`` (catalog row with the header, unwrap, frames GET, authenticate; before issue 20 a
  header GET too).

Both kinds of object go to the same bucket, made by ``storage.admin.init_buckets`` as the
recordings bucket is (versioning, object lock, SSE-S3): only client-side encryption differs.
Every figure is a median of >= 5 interleaved repetitions (raw and encrypted alternate).

    .venv/bin/python -m bench.encryption [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `bench` and the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402

SIZES = [("120 KiB", 120 * 1024), ("1 MiB", 1 << 20), ("16 MiB", 16 << 20), ("64 MiB", 64 << 20)]
RANGE_LEN = 64 * 1024
NOW = datetime.now(timezone.utc)
NUMBER = "+33612345678"


def run(quick: bool = False, reps: int | None = None, only: str | None = None) -> dict:
    import hashlib

    from storage.admin import init_buckets
    from storage.catalog import tables as t
    from storage.catalog.db import make_engine
    from storage.catalog.migrate import upgrade
    from storage.copies import object_key_for, put_encrypted, read_copy, read_copy_range, upsert_copy
    from storage.crypto import FRAME_SIZE, decrypt_bytes, encode_context, encrypt_bytes, encrypt_stream, new_data_key
    from storage.keys import KeyRing
    from storage.objectstore import ObjectStore
    from testbed.catalog import add_recording

    reps = reps or (5 if quick else 9)
    range_reps = 30 if quick else 200
    st = common.stack()
    settings = common.storage_settings(st, common.unique("bench-enc"))
    bucket = settings.recordings_bucket
    init_buckets(settings, say=lambda _m: None)
    store = ObjectStore.from_settings(settings)
    keys = KeyRing(os.urandom(32))
    number_hash = keys.number_hash("acme", NUMBER)
    results: dict = {"benchmark": "encryption", "date": common.now_iso(), "quick": quick, "reps": reps,
                     "frame_size": FRAME_SIZE, "mb": common.MB, "bucket_config": "versioning + object lock + SSE-S3 "
                     "(storage.admin.init_buckets), same bucket for raw and encrypted", "sizes": []}
    tmp = tempfile.TemporaryDirectory(prefix="bench-enc-")
    engine = make_engine(f"sqlite:///{tmp.name}/catalog.sqlite3", echo=False)
    try:
        upgrade(engine)
        with engine.begin() as conn:
            conn.execute(t.tenants.insert().values(id="acme", name="Acme", created_at=NOW))

        def put_enc(payload: bytes) -> tuple[float, uuid.UUID, str, int]:
            with engine.begin() as conn:
                rid, _ = add_recording(conn, keys, NUMBER, started=NOW, duration_ms=60_000)
                key = object_key_for("acme", rid, "production")
                t0 = time.perf_counter()
                stored = put_encrypted(conn, store, keys, bucket=bucket, object_key=key, audio=payload,
                                       caller=keys.caller_key(conn, tenant="acme", number_hash=number_hash), tags={"tier": "production", "tenant": "acme"})
                elapsed = time.perf_counter() - t0
                copy_id = upsert_copy(conn, recording_id=rid, tier="production", stored=stored, bucket=bucket,
                                      expires_at=NOW + timedelta(days=90), created_by="bench")
            return elapsed, copy_id, key, stored.size_bytes

        def get_enc(copy_id: uuid.UUID, payload: bytes) -> float:
            with engine.connect() as conn:
                t0 = time.perf_counter()
                data = read_copy(conn, store, keys, copy_id)
                elapsed = time.perf_counter() - t0
            assert data == payload, "decrypted copy differs from the payload"
            return elapsed

        def put_raw(payload: bytes, key: str) -> float:
            t0 = time.perf_counter()
            store.put(bucket, key, payload, tags={"tier": "production", "tenant": "acme"})
            return time.perf_counter() - t0

        def get_raw(key: str, payload: bytes) -> float:
            t0 = time.perf_counter()
            data = store.get(bucket, key)
            elapsed = time.perf_counter() - t0
            assert data == payload
            return elapsed

        # Warm-up: connections, the caller key (created on first use), the SQLite file.
        warm = os.urandom(4096)
        _, warm_copy, _, _ = put_enc(warm)
        get_enc(warm_copy, warm)
        put_raw(warm, "bench/raw/warmup")
        get_raw("bench/raw/warmup", warm)

        last_big: tuple[str, uuid.UUID, int] | None = None

        def measure_size(label: str, size: int) -> dict:
            common.say(f"encryption: {label} x {reps}")
            payload = os.urandom(size)
            gate = common.wait_quiet()
            watch = common.CpuWatch()
            raw_put, raw_get, enc_put, enc_get = [], [], [], []
            raw_sizes, enc_sizes = set(), set()
            run_id = uuid.uuid4().hex[:8]  # a retried measurement never overwrites the kept one's objects
            for rep in range(reps):
                raw_key = f"bench/raw/{size}/{run_id}/{rep}"
                if rep % 2 == 0:
                    raw_put.append(put_raw(payload, raw_key))
                    e_put, copy_id, enc_key, enc_size = put_enc(payload)
                    enc_put.append(e_put)
                    raw_get.append(get_raw(raw_key, payload))
                    enc_get.append(get_enc(copy_id, payload))
                else:
                    e_put, copy_id, enc_key, enc_size = put_enc(payload)
                    enc_put.append(e_put)
                    raw_put.append(put_raw(payload, raw_key))
                    enc_get.append(get_enc(copy_id, payload))
                    raw_get.append(get_raw(raw_key, payload))
                raw_sizes.add(store.head(bucket, raw_key).size)
                head = store.head(bucket, enc_key).size
                assert head == enc_size, "catalog size differs from the stored object"
                enc_sizes.add(head)
            assert len(raw_sizes) == 1 and len(enc_sizes) == 1
            raw_bytes, enc_bytes = raw_sizes.pop(), enc_sizes.pop()

            # Pure CPU: no I/O, same payload, same frame size as put_encrypted uses.
            aad = encode_context("callvault-copy", "acme/bench/production.cve")
            cpu_enc, cpu_stream, cpu_dec, cpu_sha = [], [], [], []
            for _ in range(reps):
                dk = new_data_key()
                t0 = time.perf_counter()
                blob = encrypt_bytes(payload, data_key=dk, aad=aad)
                cpu_enc.append(time.perf_counter() - t0)
                # What put_encrypted does: 1 MiB chunks through encrypt_stream, frames consumed one by one.
                t0 = time.perf_counter()
                chunks = (payload[i:i + (1 << 20)] for i in range(0, len(payload), 1 << 20))
                for _frame in encrypt_stream(chunks, plaintext_length=size, data_key=dk, aad=aad):
                    pass
                cpu_stream.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                plain = decrypt_bytes(blob, data_key=dk, aad=aad)
                cpu_dec.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                hashlib.sha256(blob).hexdigest()
                cpu_sha.append(time.perf_counter() - t0)
                assert plain == payload
                del blob, plain

            load = watch.stop()

            def mbps(seconds: list[float]) -> float:
                return size / common.MB / common.median(seconds)

            entry = {
                "label": label, "bytes": size,
                "stored_bytes": {"raw": raw_bytes, "encrypted": enc_bytes,
                                 "overhead_bytes": enc_bytes - raw_bytes,
                                 "overhead_pct": 100.0 * (enc_bytes - raw_bytes) / raw_bytes},
                "put": {"raw_mb_s": mbps(raw_put), "encrypted_mb_s": mbps(enc_put),
                        "raw_ms": 1000 * common.median(raw_put), "encrypted_ms": 1000 * common.median(enc_put),
                        "ratio": common.median(raw_put) / common.median(enc_put),
                        "raw_s": raw_put, "encrypted_s": enc_put},
                "get": {"raw_mb_s": mbps(raw_get), "encrypted_mb_s": mbps(enc_get),
                        "raw_ms": 1000 * common.median(raw_get), "encrypted_ms": 1000 * common.median(enc_get),
                        "ratio": common.median(raw_get) / common.median(enc_get),
                        "raw_s": raw_get, "encrypted_s": enc_get},
                "cpu": {"encrypt_mb_s": mbps(cpu_enc), "encrypt_stream_mb_s": mbps(cpu_stream),
                        "decrypt_mb_s": mbps(cpu_dec), "sha256_mb_s": mbps(cpu_sha),
                        "encrypt_ms": 1000 * common.median(cpu_enc),
                        "encrypt_stream_ms": 1000 * common.median(cpu_stream),
                        "decrypt_ms": 1000 * common.median(cpu_dec),
                        "sha256_ms": 1000 * common.median(cpu_sha)},
                "quiet_gate": gate, "foreign_cores": load["foreign_cores"], "foreign_top": load["foreign_top"],
            }
            common.say(f"  stored +{entry['stored_bytes']['overhead_pct']:.3f}%  put {entry['put']['raw_mb_s']:.0f}"
                       f" -> {entry['put']['encrypted_mb_s']:.0f} MB/s  get {entry['get']['raw_mb_s']:.0f} -> "
                       f"{entry['get']['encrypted_mb_s']:.0f} MB/s  cpu enc {entry['cpu']['encrypt_mb_s']:.0f} "
                       f"stream {entry['cpu']['encrypt_stream_mb_s']:.0f} "
                       f"dec {entry['cpu']['decrypt_mb_s']:.0f} MB/s")
            entry["_last"] = (raw_key, copy_id, size)
            return entry

        last_big = None
        for label, size in [x for x in SIZES if only in (None, x[0])]:
            entry = common.least_contended(lambda: measure_size(label, size), tries=2)
            last = entry.pop("_last")
            results["sizes"].append(entry)
            if size == 64 << 20:
                last_big = last

        if last_big is None:  # --only another size
            return results
        # Ranged read: 64 KiB from the middle of the 64 MiB object, not frame-aligned (two frames).
        raw_key, copy_id, size = last_big
        start = size // 2 + 4096
        end = start + RANGE_LEN - 1
        common.say(f"encryption: ranged read x {range_reps}")
        gate = common.wait_quiet()
        watch = common.CpuWatch()
        with engine.connect() as conn:
            expected = store.get(bucket, raw_key, start=start, end=end)
            gets, real_get = [], store.client.get_object  # how many GETs one encrypted ranged read makes
            store.client.get_object = lambda **kw: gets.append(kw.get("Range")) or real_get(**kw)
            try:
                assert read_copy_range(conn, store, keys, copy_id, start, end).data == expected
            finally:
                store.client.get_object = real_get
            raw_r, enc_r = [], []
            for i in range(range_reps):
                order = (0, 1) if i % 2 == 0 else (1, 0)
                for which in order:
                    t0 = time.perf_counter()
                    if which == 0:
                        data = store.get(bucket, raw_key, start=start, end=end)
                        raw_r.append(time.perf_counter() - t0)
                    else:
                        data = read_copy_range(conn, store, keys, copy_id, start, end).data
                        enc_r.append(time.perf_counter() - t0)
                    assert len(data) == RANGE_LEN
        first, last = start // FRAME_SIZE, end // FRAME_SIZE
        results["range"] = {
            "object_bytes": size, "start": start, "length": RANGE_LEN, "reps": range_reps,
            "frames_fetched": last - first + 1, "encrypted_bytes_fetched": (last - first + 1) * (FRAME_SIZE + 16),
            "requests": {"raw": 1, "encrypted": len(gets)},
            "raw_ms": {k: 1000 * v for k, v in common.summary(raw_r).items() if k != "n"},
            "encrypted_ms": {k: 1000 * v for k, v in common.summary(enc_r).items() if k != "n"},
            "ratio_median": common.median(raw_r) / common.median(enc_r),
            "quiet_gate": gate, **{k: v for k, v in watch.stop().items() if k.startswith("foreign")},
        }
        common.say(f"  ranged p50 raw {results['range']['raw_ms']['median']:.2f} ms, encrypted "
                   f"{results['range']['encrypted_ms']['median']:.2f} ms")
    finally:
        engine.dispose()
        tmp.cleanup()
        common.delete_buckets(settings, [settings.recordings_bucket, settings.landing_bucket,
                                         settings.exports_bucket])
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (5) and ranged reads (30)")
    parser.add_argument("--reps", type=int, help="repetitions per measurement (>= 5)")
    parser.add_argument("--only", choices=[label for label, _ in SIZES],
                        help="one size (and the ranged read, when it is 64 MiB); written to encryption-<size>.json")
    args = parser.parse_args(argv)
    if args.reps is not None and args.reps < 5:
        parser.error("--reps must be >= 5")
    results = run(quick=args.quick, reps=args.reps, only=args.only)
    path = common.write_json(f"encryption-{args.only.replace(' ', '')}" if args.only else "encryption", results)
    common.say(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
