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
reads them with the HEAD it makes anyway (``look``), and applies the same rules. Through SNS
(S3 → SNS → SQS without raw message delivery) the event comes as the JSON string ``Message``
of a ``Notification`` envelope: unwrapped, one envelope only; a subscription's confirmation is
ignored. Notification keys arrive form-encoded from both MinIO and S3 (``+`` a space, ``%2B`` a
plus); EventBridge's are percent-decoded, though what AWS writes there is not certain: where the
decoded key is not there, ``look`` tries the key's other decodings (``candidate_keys``), each
once, before calling the object gone. S3's test event and records of anything but a creation are
ignored with a log line naming only the event's kind.
"""

from __future__ import annotations

import enum
import json
import logging
import re
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from urllib.parse import unquote, unquote_plus

import anyio
import sqlalchemy as sa

from storage.exceptions import ObjectNotFound
from storage.objectstore import ObjectInfo, ObjectStore

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
_SNS_IGNORED = frozenset({"SubscriptionConfirmation", "UnsubscribeConfirmation"})
KEY_BYTES = 1024  # S3's longest key
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
    # the key as the event wrote it (encoded), whose other decodings ``look`` tries where ``key``
    # is not there; None: none to try. How a key was encoded is no part of the drop's identity.
    sent_key: str | None = field(default=None, compare=False, repr=False)

    @property
    def tenant(self) -> str | None:
        return tenant_of(self.key)

    @property
    def external_id(self) -> str | None:
        return (self.metadata or {}).get("recording-id")


def tenant_of(key: str) -> str | None:
    """The key's first segment, where it is a tenant's slug (what the PBX's policy allows it)."""
    first = key.split("/", 1)[0]
    return first if "/" in key and TENANT_SLUG.fullmatch(first) else None


def dropped(raw: bytes, landing_bucket: str) -> list[Dropped]:
    """The telephony objects a notification announces in our landing bucket: MinIO's event, AWS
    S3's (an SQS message's body, or the ``Message`` of SNS's envelope in it) or EventBridge's
    ``Object Created``. An S3 test event, an SNS subscription's confirmation and records of
    anything but an object's creation are ignored (logged); InvalidMessage when it is no S3 event
    at all."""
    try:
        doc = _unwrapped(json.loads(raw))
        if doc is None:
            return []
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
        raise InvalidMessage("not an S3 event notification (nor an SNS notification of one)",
                             errors=[FieldError(("Records",), "s3_event")]) from None


def _unwrapped(doc: Any) -> Any:
    """The S3 event an SNS envelope carries (S3 → SNS → SQS without raw message delivery: the
    event is the JSON *string* ``Message`` of a ``Notification``), else the document itself. One
    envelope only: an envelope inside is no S3 event. None for a subscription's (un)confirmation,
    ignored with a line naming its kind alone (never its URL nor its token)."""
    kind = _dict(doc).get("Type")
    if kind is None:
        return doc
    if kind in _SNS_IGNORED:
        log.info("drop topic: ignored an SNS %s (a subscription's, not an S3 event)", kind)
        return None
    if kind != "Notification":
        raise ValueError("an SNS envelope of another kind")
    event = _dict(json.loads(_text(doc["Message"])))
    if "Type" in event:
        raise ValueError("an envelope in an envelope")
    return event


def _list(value: Any) -> list:
    if not isinstance(value, list):
        raise TypeError("Records is not a list")
    return value


def _ignored(event: str) -> None:
    name = event.removeprefix("s3:")
    name = name if _EVENT_NAME.fullmatch(name) else "another kind of"
    log.info("drop topic: ignored %s event (only an object's creation is a drop)", name)


# bucket, key (decoded), metadata, principal, key as sent
_Record = tuple[str, str, "dict[str, str] | None", str, str]


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
    sent = _text(obj["key"])
    return _text(bucket), unquote_plus(sent), meta, _text(who or "?"), sent


def _from_eventbridge(doc: dict) -> _Record | None:
    """EventBridge's event of S3 (``detail-type: Object Created``): no metadata either, and its key
    is not form-encoded as the notifications' are (a ``+`` is a plus, as moto writes it):
    percent-decoded only, so a raw key and a ``%20``-encoded one both come out right (a
    form-encoded one too, by ``look``'s other decodings)."""
    if _text(doc["detail-type"]) != "Object Created":
        _ignored("EventBridge " + doc["detail-type"])
        return None
    detail = _dict(doc["detail"])
    who, sent = detail.get("requester"), _text(detail["object"]["key"])
    return _text(detail["bucket"]["name"]), unquote(sent), None, _text(who or "?"), sent


def _dict(value: Any) -> dict:
    if not isinstance(value, dict):
        raise TypeError("not a JSON object")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return value


def _announces_drop(bucket: str, key: str, meta: dict[str, str] | None, _who: str, _sent: str,
                    landing_bucket: str) -> bool:
    """Ours to take: in our landing bucket, no sidecar, not callvault's own sealed object."""
    return bucket == landing_bucket and not key.endswith(SIDECAR) and not _callvaults_own(meta)


def _callvaults_own(meta: dict[str, str] | None) -> bool:
    return meta is not None and set(LANDING_METADATA.items()) <= set(meta.items())


def _dropped(bucket: str, key: str, meta: dict[str, str] | None, who: str, sent: str) -> Dropped:
    return Dropped(bucket, key, meta, f"s3:{who}"[:100], sent_key=sent)


def candidate_keys(sent: str) -> list[str]:
    """Where an object announced as ``sent`` may be, in a fixed order, each once: form-decoded
    (S3's and MinIO's notifications: ``+`` a space), percent-decoded only (EventBridge's, as moto
    writes it: ``+`` a plus), as sent (not encoded at all). Only what could be a drop: under a
    tenant's prefix, no sidecar, within S3's 1,024 bytes."""
    keys = dict.fromkeys((unquote_plus(sent), unquote(sent), sent))
    return [k for k in keys if tenant_of(k) and not k.endswith(SIDECAR)
            and len(k.encode("utf-8", "surrogatepass")) <= KEY_BYTES]


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
    except (ValueError, UnicodeDecodeError, RecursionError):  # nested past the parser: no JSON either
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
    which callvault's own sealed objects are told apart; a Skip when it is not to be taken.
    More HEADs only where the decoded key is not there (``_found``); the key found is the drop's
    from then on (its tenant that key's first segment), its metadata then the HEAD's."""
    found = await anyio.to_thread.run_sync(lambda: _found(drop, store))
    if found is None:
        return Skip.GONE
    key, info = found
    metadata = drop.metadata if drop.metadata is not None and key == drop.key else dict(info.metadata or {})
    if _callvaults_own(metadata):
        return Skip.OURS
    return replace(drop, key=key, metadata=metadata, size=info.size)


def _found(drop: Dropped, store: ObjectStore) -> tuple[str, ObjectInfo] | None:
    """The drop's key and its object: the decoded key, else the first other decoding of the key
    as sent (``candidate_keys``: same bucket, a tenant's prefix, no sidecar) that is there; None:
    none is (the object is gone, its event redelivered)."""
    info = store.head(drop.bucket, drop.key)
    if info is not None:
        return drop.key, info
    sent = drop.sent_key
    for key in candidate_keys(sent) if sent is not None else []:
        if key != drop.key and (info := store.head(drop.bucket, key)) is not None:
            how = "form-decoded" if key == unquote_plus(sent) else "percent-decoded" if key == unquote(sent) else "as sent"
            log.info("drop tenant=%s: found under its key %s, not as first decoded", tenant_of(key), how)
            return key, info
    return None


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
