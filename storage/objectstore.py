"""The S3 data path, on boto3, so MinIO and AWS S3 behave the same.

Only this module imports botocore; its errors become ours here. Object keys are built by
callers from ids (never a phone number, see ``storage.keys``).
"""

from __future__ import annotations

import heapq
import io
import itertools
import logging
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import BinaryIO, Generator, Iterable, Iterator

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from .exceptions import ObjectNotFound, ObjectStoreUnavailable, StorageError
from .settings import StorageSettings

DELETE_BATCH = 1000  # S3 DeleteObjects limit
log = logging.getLogger(__name__)
LIST_CONCURRENCY = 8
MULTIPART_THRESHOLD = 16 * 1024 * 1024
STREAM_CHUNK = 256 * 1024  # a few frames of the worker's 64 KiB: few reads, little memory
_NOT_FOUND = {"NoSuchKey", "404", "NotFound", "NoSuchVersion"}
_NO_LOCK_CONFIG = {"ObjectLockConfigurationNotFoundError", "ObjectLockConfigurationNotFound"}
# Asking an object's legal hold: never set (NoSuchObjectLockConfiguration), or the bucket has
# no object lock (InvalidRequest): either way it is off.
_NO_LEGAL_HOLD = {"NoSuchObjectLockConfiguration", "InvalidRequest"}
# A version deleted by name that is already gone (a sweep or erasure finished twice): done.
_GONE = {"NoSuchVersion", "NoSuchKey"}


def s3_client(settings: StorageSettings):
    """A boto3 S3 client for the configured endpoint (None = AWS) and region."""
    secret = settings.secret_key.get_secret_value() if settings.secret_key else None
    access = settings.access_key.get_secret_value() if settings.access_key else None
    return boto3.client(
        "s3", endpoint_url=settings.endpoint_url or None, region_name=settings.region,
        aws_access_key_id=access, aws_secret_access_key=secret,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5, "mode": "standard"},
                      max_pool_connections=32),
    )


def translate(exc: Exception, *, bucket: str, key: str | None = None) -> StorageError:
    where = f"s3://{bucket}/{key}" if key else f"s3://{bucket}"
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in _NOT_FOUND:
            return ObjectNotFound(f"{where} does not exist")
        if status >= 500:
            return ObjectStoreUnavailable(f"{where}: object store answered {status} {code}", hint="retry later")
        return StorageError(f"{where}: {code}: {exc.response.get('Error', {}).get('Message', '')}")
    if isinstance(exc, (EndpointConnectionError, BotoCoreError)):
        return ObjectStoreUnavailable(f"{where}: object store unreachable ({type(exc).__name__})",
                                      hint="check CALLVAULT_STORAGE_ENDPOINT_URL and that the server runs")
    return StorageError(f"{where}: {exc}")


class _IterReader(io.RawIOBase):
    """A file object over an iterator of byte chunks, for streaming uploads."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self._buf:
            try:
                self._buf = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def _small_or_stream(chunks: Iterable[bytes]) -> bytes | Iterator[bytes]:
    """The whole body as bytes when it is under the multipart threshold (one PUT, no thread
    pool), else a stream of it (multipart): memory stays under a part whatever the size."""
    head: list[bytes] = []
    size = 0
    it = iter(chunks)
    for chunk in it:
        head.append(chunk)
        size += len(chunk)
        if size >= MULTIPART_THRESHOLD:
            return itertools.chain(head, it)
    return b"".join(head)


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    version_id: str | None = None
    last_modified: datetime | None = None
    # x-amz-meta-* without the prefix, names lower-case (a HEAD's; a listing has none)
    metadata: dict[str, str] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class VersionInfo:
    version_id: str | None  # None: an unversioned bucket's only version
    last_modified: datetime | None = None
    marker: bool = False    # a delete marker, not data
    latest: bool = False    # the key's current version (a GET without a version id reads it)


@dataclass(frozen=True)
class KeyVersions:
    """One key's versions and delete markers, newest first, as ``ListObjectVersions`` lists them."""
    key: str
    versions: tuple[VersionInfo, ...]

    @property
    def live(self) -> bool:
        """Whether a GET without a version id finds data (the current entry is not a delete marker)."""
        return any(v.latest and not v.marker for v in self.versions)

    @property
    def data(self) -> tuple[VersionInfo, ...]:
        """The versions holding data (delete markers left out)."""
        return tuple(v for v in self.versions if not v.marker)

    @property
    def last_modified(self) -> datetime | None:
        """The current entry's time (what ``list_objects_v2`` would give)."""
        return next((v.last_modified for v in self.versions if v.latest), None)


def _page_entries(page: dict) -> Iterator[tuple[str, VersionInfo]]:
    """One ``ListObjectVersions`` page's versions and delete markers, merged in key order (each
    list is key-ordered, a key's entries newest first; a marker and a version of one key are
    ordered by time, newest first)."""
    def entries(name: str, marker: bool) -> Iterator[tuple[str, VersionInfo]]:
        for v in page.get(name, []):
            yield v["Key"], VersionInfo(_version(v.get("VersionId")), v.get("LastModified"), marker,
                                        bool(v.get("IsLatest")))
    merged = heapq.merge(entries("Versions", False), entries("DeleteMarkers", True),
                         key=lambda e: (e[0], -(e[1].last_modified or _EPOCH).timestamp()))
    yield from merged


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def _version(version: str | None) -> str | None:
    """A version id as we keep it: None for an unversioned bucket's (absent, or "null")."""
    return version if version and version != "null" else None


def _record_completed_versions(client) -> dict[tuple[str, str], str | None]:
    """The version id of each multipart upload, by (bucket, key), from CompleteMultipartUpload's
    response: s3transfer's ``upload_fileobj`` returns nothing. Registered once per client;
    the uploader pops its entry right after the upload."""
    completed = getattr(client, "_callvault_completed", None)
    if completed is None:
        completed = client._callvault_completed = {}

        def record(parsed=None, model=None, **_kw) -> None:
            if model is not None and model.name == "CompleteMultipartUpload" and parsed and "Key" in parsed:
                completed[(parsed.get("Bucket"), parsed["Key"])] = _version(parsed.get("VersionId"))

        client.meta.events.register("after-call.s3.CompleteMultipartUpload", record)
    return completed


def _where(bucket: str, key: str, version: str | None) -> dict[str, str]:
    """The S3 call's address of one object version (no ``VersionId``: the current version)."""
    return {"Bucket": bucket, "Key": key, **({"VersionId": version} if version else {})}


class ObjectStore:
    """put / get (ranges) / stream / tags / legal hold / delete (all versions, or named ones) / list."""

    def __init__(self, client) -> None:
        self.client = client
        self._locked_buckets: set[str] = set()  # object lock, once on, cannot be turned off
        self._transfer = TransferConfig(multipart_threshold=MULTIPART_THRESHOLD,
                                        multipart_chunksize=MULTIPART_THRESHOLD, max_concurrency=4)
        self._completed = _record_completed_versions(client)

    @classmethod
    def from_settings(cls, settings: StorageSettings) -> "ObjectStore":
        return cls(s3_client(settings))

    def put(self, bucket: str, key: str, body: bytes | BinaryIO | Iterable[bytes], *,
            tags: dict[str, str] | None = None, content_type: str = "application/octet-stream",
            metadata: dict[str, str] | None = None) -> str | None:
        """Upload; large or streamed bodies go multipart (boto3 switches past the threshold).
        Returns the new version's id (None where the bucket has no versioning), from the
        PUT's or the CompleteMultipartUpload's response: what a deletion by version names.

        Bytes under the threshold go in one ``put_object``: s3transfer's thread pool costs a
        call-sized object about as much as the upload itself (40 % of a pass-through
        ingest in the profile, ``bench/NOTES.md``)."""
        extra: dict = {"ContentType": content_type}
        if metadata:
            extra["Metadata"] = metadata
        if tags:
            extra["Tagging"] = "&".join(f"{k}={v}" for k, v in tags.items())
        if not isinstance(body, (bytes, bytearray)) and not hasattr(body, "read"):
            body = _small_or_stream(body)  # s3transfer would buffer that much anyway
        if isinstance(body, (bytes, bytearray)) and len(body) < MULTIPART_THRESHOLD:
            try:
                resp = self.client.put_object(Bucket=bucket, Key=key, Body=bytes(body), **extra)
            except (ClientError, BotoCoreError) as exc:
                raise translate(exc, bucket=bucket, key=key) from exc
            return _version(resp.get("VersionId"))
        if isinstance(body, (bytes, bytearray)):
            fileobj: BinaryIO = io.BytesIO(body)
        elif hasattr(body, "read"):
            fileobj = body  # type: ignore[assignment]
        else:
            fileobj = io.BufferedReader(_IterReader(body), buffer_size=1024 * 1024)  # type: ignore[arg-type]
        try:
            self.client.upload_fileobj(fileobj, bucket, key, ExtraArgs=extra, Config=self._transfer)
            return self._completed.pop((bucket, key), None)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, bucket=bucket, key=key) from exc
        except Exception as exc:  # boto3's S3UploadFailedError wraps the ClientError
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, (ClientError, BotoCoreError)):
                raise translate(cause, bucket=bucket, key=key) from exc
            raise

    def put_locked(self, bucket: str, key: str, body: bytes, *, retain_days: float,
                   content_type: str = "application/json") -> None:
        """Upload under object lock in COMPLIANCE mode until now + ``retain_days``: no one, the
        bucket's root user included, deletes or overwrites that version before (ledger, anchors)."""
        until = datetime.now(timezone.utc) + timedelta(days=retain_days)
        try:
            self.client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type,
                                   ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, bucket=bucket, key=key) from exc

    def get(self, bucket: str, key: str, *, start: int | None = None, end: int | None = None,
            version_id: str | None = None) -> bytes:
        """Whole object, or bytes start..end inclusive (one ranged GET)."""
        kwargs = _where(bucket, key, version_id)
        if start is not None:
            kwargs["Range"] = f"bytes={start}-{'' if end is None else end}"
        try:
            return self.client.get_object(**kwargs)["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, bucket=bucket, key=key) from exc

    def stream(self, bucket: str, key: str, *, chunk_size: int = STREAM_CHUNK,
               version: str | None = None) -> Generator[bytes, None, None]:
        """The whole object (``version``, default the current one) as chunks of about ``chunk_size``
        bytes, read as they arrive (one GET): memory stays at one chunk whatever the object's size.
        A failure mid-way raises like ``get``; the consumer must then treat what it has as incomplete."""
        try:
            body = self.client.get_object(**_where(bucket, key, version))["Body"]
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, bucket=bucket, key=key) from exc

        def generate() -> Iterator[bytes]:
            try:
                yield from body.iter_chunks(chunk_size)
            except (ClientError, BotoCoreError) as exc:
                raise translate(exc, bucket=bucket, key=key) from exc
            finally:
                body.close()

        return generate()

    def head(self, bucket: str, key: str, *, version: str | None = None) -> ObjectInfo | None:
        """One version's size, id and object metadata (default: the current version's); None where it
        is not there."""
        try:
            meta = self.client.head_object(**_where(bucket, key, version))
        except ClientError as exc:
            err = translate(exc, bucket=bucket, key=key)
            if isinstance(err, ObjectNotFound):
                return None
            raise err from exc
        except BotoCoreError as exc:
            raise translate(exc, bucket=bucket, key=key) from exc
        return ObjectInfo(key, meta["ContentLength"], _version(meta.get("VersionId")),
                          metadata={k.lower(): v for k, v in (meta.get("Metadata") or {}).items()})

    def get_tags(self, bucket: str, key: str, *, version: str | None = None) -> dict[str, str]:
        """One version's tags (default: the current version's)."""
        try:
            tags = self.client.get_object_tagging(**_where(bucket, key, version))["TagSet"]
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, bucket=bucket, key=key) from exc
        return {t["Key"]: t["Value"] for t in tags}

    def put_tags(self, bucket: str, key: str, tags: dict[str, str], *, version: str | None = None) -> None:
        """Replace one version's tags (default: the current version's)."""
        try:
            self.client.put_object_tagging(
                **_where(bucket, key, version), Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]})
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, bucket=bucket, key=key) from exc

    def object_lock_enabled(self, bucket: str) -> bool:
        """Whether the bucket has S3 object lock (then an object version can carry a legal hold)."""
        if bucket in self._locked_buckets:
            return True
        try:
            conf = self.client.get_object_lock_configuration(Bucket=bucket)
        except ClientError as exc:
            if _code(exc) in _NO_LOCK_CONFIG:
                return False
            raise translate(exc, bucket=bucket) from exc
        except BotoCoreError as exc:
            raise translate(exc, bucket=bucket) from exc
        enabled = conf.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"
        if enabled:
            self._locked_buckets.add(bucket)
        return enabled

    def set_legal_hold(self, bucket: str, key: str, on: bool, *, version: str | None = None) -> None:
        """Put or lift the legal hold of one version (default: the current one); the bucket
        needs object lock (without it: a ``StorageError``; a missing object: ``ObjectNotFound``)."""
        try:
            self.client.put_object_legal_hold(**_where(bucket, key, version),
                                              LegalHold={"Status": "ON" if on else "OFF"})
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, bucket=bucket, key=key) from exc

    def legal_hold(self, bucket: str, key: str, *, version: str | None = None) -> bool:
        """Whether one version (default: the current one) is under legal hold (False where the
        bucket has no object lock or the hold was never set)."""
        try:
            status = self.client.get_object_legal_hold(**_where(bucket, key, version))["LegalHold"]["Status"]
        except ClientError as exc:
            if _code(exc) in _NO_LEGAL_HOLD:
                return False
            raise translate(exc, bucket=bucket, key=key) from exc
        except BotoCoreError as exc:
            raise translate(exc, bucket=bucket, key=key) from exc
        return status == "ON"

    def list(self, bucket: str, prefix: str = "", *, start_after: str | None = None) -> Iterator[ObjectInfo]:
        """The objects under ``prefix`` in key order; only those after ``start_after`` if given."""
        extra = {"StartAfter": start_after} if start_after else {}
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, **extra):
                for obj in page.get("Contents", []):
                    yield ObjectInfo(obj["Key"], obj["Size"], last_modified=obj["LastModified"])
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, bucket=bucket) from exc

    def versions(self, bucket: str, prefix: str, *, markers: bool = True) -> Iterator[tuple[str, str | None]]:
        """(key, version id) of every version (and delete marker, unless ``markers`` is False) under a prefix."""
        try:
            for page in self.client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
                for v in page.get("Versions", []) + (page.get("DeleteMarkers", []) if markers else []):
                    yield v["Key"], v.get("VersionId")
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, bucket=bucket) from exc

    def key_versions(self, bucket: str) -> Iterator[KeyVersions]:
        """Every key of the bucket with its versions and delete markers, in key order (UTF-8 byte
        order, as ``list`` lists), one key at a time: memory of one page and one key's versions."""
        key, found = None, []
        try:
            for page in self.client.get_paginator("list_object_versions").paginate(Bucket=bucket):
                for here, info in _page_entries(page):
                    if here != key and key is not None:
                        yield KeyVersions(key, tuple(found))
                        found = []
                    key = here
                    found.append(info)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, bucket=bucket) from exc
        if key is not None:
            yield KeyVersions(key, tuple(found))

    def protected(self, bucket: str, key: str, version: str | None) -> bool:
        """Whether object lock protects one version (a legal hold or an unexpired retention):
        no deletion by its id succeeds until that is lifted."""
        return self._locked(bucket, key, version)

    def delete(self, bucket: str, key: str) -> int:
        """Delete every version and delete marker of one key; return how many went."""
        return self.delete_many(bucket, [key])

    def delete_many(self, bucket: str, keys: Iterable[str]) -> int:
        """Delete all versions of many keys with DeleteObjects, 1,000 entries per call.

        Each key's versions are listed first (in parallel: one LIST per key is the cost
        that dominates a sweep), so old versions and delete markers go too.
        """
        keys = list(keys)
        with ThreadPoolExecutor(max_workers=LIST_CONCURRENCY) as pool:
            listed = list(pool.map(lambda k: (k, [(vk, v) for vk, v in self.versions(bucket, k) if vk == k]), keys))
        return self._delete_entries(bucket, ({"Key": k, **({"VersionId": v} if _version(v) else {})}
                                             for key, found in listed for k, v in found or [(key, None)]))

    def delete_versions(self, bucket: str, versions: Iterable[tuple[str, str]]) -> int:
        """Delete exactly these (key, version id) pairs with DeleteObjects, 1,000 a call, with no
        listing first. Naming the version removes it (no delete marker); one already gone counts
        as deleted (an interrupted sweep finished again); a locked one is kept (``_delete_batch``)."""
        return self._delete_entries(bucket, ({"Key": key, "VersionId": version} for key, version in versions))

    def _delete_entries(self, bucket: str, entries: Iterable[dict]) -> int:
        deleted = 0
        batch: list[dict] = []
        for entry in entries:
            batch.append(entry)
            if len(batch) == DELETE_BATCH:
                deleted += self._delete_batch(bucket, batch)
                batch = []
        if batch:
            deleted += self._delete_batch(bucket, batch)
        return deleted

    def delete_located(self, located: Iterable[tuple[str, str, str | None]]) -> int:
        """Delete copies' objects named by (bucket, key, version id) that may span buckets
        (sweeps, erasures). A known version is deleted by name (``delete_versions``); a None
        version (older copies, a key with other versions, an unversioned bucket) takes
        ``delete_many``'s path: every version of the key, listed first."""
        named: dict[str, list[tuple[str, str]]] = defaultdict(list)
        unnamed: dict[str, list[str]] = defaultdict(list)
        for bucket, key, version in located:
            if version:
                named[bucket].append((key, version))
            else:
                unnamed[bucket].append(key)
        return (sum(self.delete_versions(bucket, pairs) for bucket, pairs in named.items())
                + sum(self.delete_many(bucket, keys) for bucket, keys in unnamed.items()))

    def _delete_batch(self, bucket: str, batch: list[dict]) -> int:
        """One DeleteObjects call. A version the bucket's object lock protects (under legal
        hold or retention) is kept, not a failure: only a hold's release may delete it. This
        is how an old held version survives a sweep or an erasure of the copy written over it
        under the same key (a held copy a catalog restore could not bring back, made again)."""
        try:
            resp = self.client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, bucket=bucket) from exc
        errors = [e for e in resp.get("Errors", []) if e.get("Code") not in _GONE
                  and not self._locked(bucket, e.get("Key"), e.get("VersionId"))]
        if errors:
            first = errors[0]
            raise StorageError(f"s3://{bucket}: {len(errors)} of {len(batch)} deletions failed, first: "
                               f"{first.get('Key')} {first.get('Code')} {first.get('Message')}")
        kept = sum(1 for e in resp.get("Errors", []) if e.get("Code") not in _GONE)
        if kept:
            log.warning("s3://%s: %d object version(s) kept: under legal hold or retention", bucket, kept)
        return len(batch) - kept

    def _locked(self, bucket: str, key: str | None, version: str | None) -> bool:
        """Whether one version is protected by object lock: a legal hold or an unexpired retention."""
        if not key:
            return False
        try:
            if self.legal_hold(bucket, key, version=version):
                return True
        except ObjectStoreUnavailable:
            raise
        except StorageError:  # gone since, or unreadable: not a protected version
            return False
        try:
            until = self.client.get_object_retention(**_where(bucket, key, version))["Retention"]["RetainUntilDate"]
        except (ClientError, KeyError):
            return False
        except BotoCoreError as exc:
            raise translate(exc, bucket=bucket, key=key) from exc
        return until > datetime.now(until.tzinfo)
