"""The S3 drop: telephony uploads a call to ``s3://<landing>/<tenant>/...``; the object store
announces it on the drop topic (MinIO's own Kafka notification target, no poller of ours);
the worker turns it into an ordinary sealed claim-check message.

Metadata comes with the object, as ``x-amz-meta-*`` (``aws s3 cp call.wav s3://landing/acme/...
--metadata recording-id=...,started-at=...,agent-id=...``: the fields of schema v1, dashes for
underscores, ``redactions`` as ``START-END`` spans) or, for a caller number, as a JSON sidecar
``<key>.json`` uploaded *before* the audio (the fields of schema v1 but ``schema`` and ``audio``).
MinIO copies object metadata into the event it publishes, so a number never goes there: a
``caller-number`` in ``x-amz-meta-*`` is refused (dead-lettered), the sidecar carries it.

For each new object of the landing bucket that is not callvault's own (``LANDING_METADATA``)
nor a sidecar: metadata checked by the schema's rules (the tenant is the key's first segment;
a body naming another is ``tenant_mismatch``) → the object streamed into a sealed landing
object (``Producer.land``) → ``front_door.enqueue`` (idempotent on the recording id, its status
kept) → the dropped plaintext object and its sidecar deleted, since the sealed copy and its
message are durable. An object already gone is a redelivered event: nothing to do. A refusal
(bad metadata, a conflict, too large) is dead-lettered by the worker and the plaintext deleted.

AWS S3 publishes no ``x-amz-meta-*`` in its events (an SQS message's body: ``Records`` without
``userMetadata``, ``eventName`` without ``s3:``; or EventBridge's ``Object Created``): the worker
reads them with the HEAD it makes anyway (``look``), and applies the same rules. Notification
keys arrive form-encoded from both MinIO and S3 (``+`` a space, ``%2B`` a plus); EventBridge's
are percent-decoded only. S3's test event and records of anything but a creation are ignored
with a log line naming only the event's kind.
"""

from __future__ import annotations

import enum
import json
import logging
import re
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from urllib.parse import unquote, unquote_plus

import anyio
import sqlalchemy as sa

from storage.exceptions import ObjectNotFound
from storage.objectstore import ObjectStore

from . import front_door
from .exceptions import AudioTooLarge, FieldError, InvalidMessage, TenantMismatch
from .producer import LANDING_METADATA, Producer
from .schema import AudioFormat
from .service import recording_uuid
from .settings import TENANT_SLUG

SIDECAR = ".json"
META = "x-amz-meta-"
_LIST_FIELDS = {"redactions"}
_EVENT_NAME = re.compile(r"[A-Za-z:* ]{1,64}")  # an event name fit for a log line (no digits, no value)
_NOT_S3 = (ValueError, KeyError, TypeError, AttributeError, RecursionError)
log = logging.getLogger("callvault.ingest")


class Skip(enum.Enum):
    """Why an announced object is not taken (``look``)."""
    GONE = "already handled (the object is gone: its event was redelivered)"
    OURS = "callvault's own sealed landing object"


@dataclass(frozen=True)
class Dropped:
    bucket: str
    key: str
    # x-amz-meta-* without the prefix, names lower-case; None: the event carries none (AWS S3's
    # events do not), ``look`` reads them with a HEAD
    metadata: dict[str, str] | None
    principal: str
    size: int | None = None  # known once ``look`` has seen the object

    @property
    def tenant(self) -> str | None:
        first = self.key.split("/", 1)[0]
        return first if "/" in self.key and TENANT_SLUG.fullmatch(first) else None

    @property
    def external_id(self) -> str | None:
        return (self.metadata or {}).get("recording-id")


def dropped(raw: bytes, landing_bucket: str) -> list[Dropped]:
    """The telephony objects a notification announces in our landing bucket: MinIO's event, AWS
    S3's (an SQS message's body) or EventBridge's ``Object Created``. An S3 test event and records
    of anything but an object's creation are ignored (logged); InvalidMessage when it is no S3
    event at all."""
    try:
        doc = json.loads(raw)
        if doc.get("Event") == "s3:TestEvent":
            log.info("drop topic: ignored an s3:TestEvent (the bucket's notification was set up)")
            return []
        if doc.get("source") == "aws.s3" and "detail-type" in doc:
            records = [_from_eventbridge(doc)]
        else:
            records = [_from_record(record) for record in _list(doc["Records"])]
        return [_dropped(*r) for r in records if r is not None and _announces_drop(*r, landing_bucket)]
    except InvalidMessage:
        raise
    except _NOT_S3:
        raise InvalidMessage("not an S3 event notification", errors=[FieldError(("Records",), "s3_event")]) from None


def _list(value: Any) -> list:
    if not isinstance(value, list):
        raise TypeError("Records is not a list")
    return value


def _ignored(event: str) -> None:
    name = event.removeprefix("s3:")
    name = name if _EVENT_NAME.fullmatch(name) else "another kind of"
    log.info("drop topic: ignored %s event (only an object's creation is a drop)", name)


_Record = tuple[str, str, "dict[str, str] | None", str]  # bucket, key (decoded), metadata, principal


def _from_record(record: dict) -> _Record | None:
    """One of ``Records`` (MinIO's, with ``userMetadata``; AWS S3's, without; ``eventName`` with
    or without the ``s3:`` prefix); None when it is not an object's creation."""
    name = _text(record["eventName"])
    if not name.removeprefix("s3:").startswith("ObjectCreated:"):
        _ignored(name)
        return None
    obj, bucket = record["s3"]["object"], record["s3"]["bucket"]["name"]
    meta = obj["userMetadata"] if "userMetadata" in obj else None
    if meta is not None:
        meta = {k.lower()[len(META):]: _text(v) for k, v in _dict(meta).items() if k.lower().startswith(META)}
    who = (record.get("userIdentity") or {}).get("principalId")
    return _text(bucket), unquote_plus(_text(obj["key"])), meta, _text(who or "?")


def _from_eventbridge(doc: dict) -> _Record | None:
    """EventBridge's event of S3 (``detail-type: Object Created``): no metadata either, and its key
    is not form-encoded as the notifications' are (a ``+`` is a plus): percent-decoded only, so a
    raw key and a ``%20``-encoded one both come out right."""
    if _text(doc["detail-type"]) != "Object Created":
        _ignored("EventBridge " + doc["detail-type"])
        return None
    detail = _dict(doc["detail"])
    who = detail.get("requester")
    return (_text(detail["bucket"]["name"]), unquote(_text(detail["object"]["key"])), None,
            _text(who or "?"))


def _dict(value: Any) -> dict:
    if not isinstance(value, dict):
        raise TypeError("not a JSON object")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return value


def _announces_drop(bucket: str, key: str, meta: dict[str, str] | None, _who: str, landing_bucket: str) -> bool:
    """Ours to take: in our landing bucket, no sidecar, not callvault's own sealed object."""
    return bucket == landing_bucket and not key.endswith(SIDECAR) and not _callvaults_own(meta)


def _callvaults_own(meta: dict[str, str] | None) -> bool:
    return meta is not None and set(LANDING_METADATA.items()) <= set(meta.items())


def _dropped(bucket: str, key: str, meta: dict[str, str] | None, who: str) -> Dropped:
    return Dropped(bucket, key, meta, f"s3:{who}"[:100])


def _refuse(loc: str, kind: str, msg: str) -> InvalidMessage:
    return InvalidMessage.from_errors([FieldError((loc,), kind, msg)])


def _from_object_metadata(drop: Dropped) -> dict[str, Any]:
    if "caller-number" in (drop.metadata or {}):
        raise _refuse("caller_number", "number_in_object_metadata", "a number never goes in x-amz-meta-* (the "
                      "object store copies it into its event): put it in the JSON sidecar")
    fields: dict[str, Any] = {"direction": "inbound"}
    for name, value in (drop.metadata or {}).items():
        fields[name.replace("-", "_")] = value
    if "redactions" in fields:
        spans = [s.split("-", 1) for s in fields["redactions"].replace(" ", ",").split(",") if s]
        fields["redactions"] = [{"start_ms": int(a), "end_ms": int(b)} if a.isdigit() and b.isdigit() else
                                {"start_ms": a} for a, b in (s if len(s) == 2 else (s[0], "") for s in spans)]
    return fields


def _from_sidecar(drop: Dropped, store: ObjectStore) -> dict[str, Any]:
    try:
        doc = json.loads(store.get(drop.bucket, drop.key + SIDECAR))
    except ObjectNotFound:
        raise _refuse("metadata", "missing", "neither x-amz-meta-recording-id nor a sidecar "
                      f"<key>{SIDECAR} uploaded before the audio") from None
    except (ValueError, UnicodeDecodeError):
        raise _refuse("metadata", "json_invalid", "the sidecar is not JSON") from None
    if not isinstance(doc, dict):
        raise _refuse("metadata", "dict_type", "the sidecar must be a JSON object")
    return doc


def metadata_of(drop: Dropped, store: ObjectStore) -> dict[str, Any]:
    """The message's fields: from the object's metadata, else from its sidecar; the tenant is the key's."""
    if drop.tenant is None:
        raise _refuse("tenant", "key_prefix", "the object is not under <tenant>/ in the landing bucket")
    fields = _from_object_metadata(drop) if drop.external_id else _from_sidecar(drop, store)
    if fields.get("tenant", drop.tenant) != drop.tenant:
        raise TenantMismatch(f"the metadata names another tenant than the key's prefix ({drop.tenant})",
                             hint="upload under the tenant's own prefix")
    suffix = drop.key.rsplit(".", 1)[-1].lower()
    if "audio_format" not in fields and suffix in {f.value for f in AudioFormat} | {"oga"}:
        fields["audio_format"] = "ogg" if suffix == "oga" else suffix
    return {**fields, "tenant": drop.tenant}


def recording_of(drop: Dropped) -> uuid.UUID | None:
    """The id a dead letter of this drop is filed under (its status tells it)."""
    return recording_uuid(drop.tenant, drop.external_id) if drop.tenant and drop.external_id else None


async def look(drop: Dropped, store: ObjectStore) -> Dropped | Skip:
    """One HEAD: the object's size and, where its event carried none (AWS S3), its metadata, by
    which callvault's own sealed objects are told apart; a Skip when it is not to be taken."""
    info = await anyio.to_thread.run_sync(lambda: store.head(drop.bucket, drop.key))
    if info is None:
        return Skip.GONE
    metadata = drop.metadata if drop.metadata is not None else dict(info.metadata or {})
    if _callvaults_own(metadata):
        return Skip.OURS
    return replace(drop, metadata=metadata, size=info.size)


async def take(drop: Dropped, producer: Producer, engine: sa.Engine, *, max_bytes: int, default_region: str,
               now: datetime) -> front_door.Receipt:
    """Ingest one dropped object, as ``look`` returned it (its size and metadata known)."""
    if drop.size is None or drop.metadata is None:
        raise ValueError("take() wants the drop as look() returned it")
    store = producer.store
    fields = await anyio.to_thread.run_sync(lambda: metadata_of(drop, store))
    meta = front_door.check_metadata(fields, default_region=default_region)
    if drop.size > max_bytes:
        raise AudioTooLarge(f"the dropped object is {drop.size} bytes, over the limit of {max_bytes}")
    ref = await anyio.to_thread.run_sync(lambda: producer.land(meta.tenant, store.stream(drop.bucket, drop.key),
                                                               drop.size))
    receipt = await front_door.enqueue(producer, engine, meta, ref, door="s3-drop", principal=drop.principal,
                                       now=now)
    await anyio.to_thread.run_sync(lambda: discard(drop, store))
    return receipt


def discard(drop: Dropped, store: ObjectStore) -> None:
    """The dropped plaintext and its sidecar go: handled (sealed copy sent) or refused."""
    store.delete_many(drop.bucket, [drop.key, drop.key + SIDECAR])
