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
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote_plus

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


@dataclass(frozen=True)
class Dropped:
    bucket: str
    key: str
    metadata: dict[str, str]  # x-amz-meta-* without the prefix, names lower-case
    principal: str

    @property
    def tenant(self) -> str | None:
        first = self.key.split("/", 1)[0]
        return first if "/" in self.key and TENANT_SLUG.fullmatch(first) else None

    @property
    def external_id(self) -> str | None:
        return self.metadata.get("recording-id")


def dropped(raw: bytes, landing_bucket: str) -> list[Dropped]:
    """The telephony objects a notification announces in our landing bucket (InvalidMessage when
    it is no S3 event at all)."""
    try:
        records = json.loads(raw)["Records"]
        found = []
        for record in records:
            obj, bucket = record["s3"]["object"], record["s3"]["bucket"]["name"]
            meta = {k.lower()[len(META):]: v for k, v in (obj.get("userMetadata") or {}).items()
                    if k.lower().startswith(META)}
            key = unquote_plus(obj["key"])
            if (not record["eventName"].startswith("s3:ObjectCreated:") or bucket != landing_bucket
                    or key.endswith(SIDECAR) or set(LANDING_METADATA.items()) <= set(meta.items())):
                continue
            who = (record.get("userIdentity") or {}).get("principalId") or "?"
            found.append(Dropped(bucket, key, meta, f"s3:{who}"[:100]))
        return found
    except (ValueError, KeyError, TypeError, AttributeError):
        raise InvalidMessage("not an S3 event notification", errors=[FieldError(("Records",), "s3_event")]) from None


def _refuse(loc: str, kind: str, msg: str) -> InvalidMessage:
    return InvalidMessage.from_errors([FieldError((loc,), kind, msg)])


def _from_object_metadata(drop: Dropped) -> dict[str, Any]:
    if "caller-number" in drop.metadata:
        raise _refuse("caller_number", "number_in_object_metadata", "a number never goes in x-amz-meta-* (the "
                      "object store copies it into its event): put it in the JSON sidecar")
    fields: dict[str, Any] = {"direction": "inbound"}
    for name, value in drop.metadata.items():
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


async def take(drop: Dropped, producer: Producer, engine: sa.Engine, *, max_bytes: int, default_region: str,
               now: datetime) -> front_door.Receipt | None:
    """Ingest one dropped object (None: it is gone, its event was redelivered)."""
    store = producer.store
    info = await anyio.to_thread.run_sync(lambda: store.head(drop.bucket, drop.key))
    if info is None:
        return None
    fields = await anyio.to_thread.run_sync(lambda: metadata_of(drop, store))
    meta = front_door.check_metadata(fields, default_region=default_region)
    if info.size > max_bytes:
        raise AudioTooLarge(f"the dropped object is {info.size} bytes, over the limit of {max_bytes}")
    ref = await anyio.to_thread.run_sync(lambda: producer.land(meta.tenant, store.stream(drop.bucket, drop.key),
                                                               info.size))
    receipt = await front_door.enqueue(producer, engine, meta, ref, door="s3-drop", principal=drop.principal,
                                       now=now)
    await anyio.to_thread.run_sync(lambda: discard(drop, store))
    return receipt


def discard(drop: Dropped, store: ObjectStore) -> None:
    """The dropped plaintext and its sidecar go: handled (sealed copy sent) or refused."""
    store.delete_many(drop.bucket, [drop.key, drop.key + SIDECAR])
