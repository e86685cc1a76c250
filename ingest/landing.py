"""Landing objects: the audio of a claim-check message, uploaded before the message is sent.

A message can only name an object of its own tenant in the landing bucket, and only the very
object it names (size and SHA-256) is read or deleted: a message cannot get another tenant's or
another call's object read or deleted by naming its key. A landing object is deleted once its
call is stored or refused, except after a refusal a replay may cure (``REPLAYABLE``).
"""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING

from storage.exceptions import ObjectNotFound

from . import sealing
from .exceptions import ClaimCheckError, IngestError
from .schema import RecordingMessage, parse_message

if TYPE_CHECKING:
    from .service import IngestDeps, Subject

log = logging.getLogger("callvault.ingest")


def check_ref(msg: RecordingMessage, deps: IngestDeps) -> None:
    """A claim check names an object of its own tenant in the landing bucket, nothing else."""
    ref = msg.audio.ref
    if ref.bucket != deps.storage.landing_bucket:
        raise ClaimCheckError(f"claim check points at bucket {ref.bucket!r}, not the landing bucket",
                              hint="upload through `callvault push` or to CALLVAULT_STORAGE_LANDING_BUCKET")
    if not ref.key.startswith(f"{msg.tenant}/") or "/../" in f"/{ref.key}/":
        raise ClaimCheckError(f"claim check names a landing object outside tenant {msg.tenant!r}'s prefix",
                              hint=f"upload under {msg.tenant}/ in the landing bucket")


def landing_object(msg: RecordingMessage, deps: IngestDeps) -> bytes | None:
    """The landing object, when it is exactly the one the message names (size and SHA-256);
    None when it is another; ObjectNotFound when there is none."""
    ref = msg.audio.ref
    info = deps.store.head(ref.bucket, ref.key)
    if info is None:
        raise ObjectNotFound(f"s3://{ref.bucket}/{ref.key} does not exist")
    if info.size != ref.size:
        return None
    data = deps.store.get(ref.bucket, ref.key)
    return data if len(data) == ref.size and hashlib.sha256(data).hexdigest() == ref.sha256 else None


def fetch_audio(msg: RecordingMessage, deps: IngestDeps) -> bytes:
    if msg.audio.inline is not None:
        return msg.audio.inline
    check_ref(msg, deps)
    ref = msg.audio.ref
    try:
        data = landing_object(msg, deps)
    except ObjectNotFound as exc:
        raise ClaimCheckError("claim-check object is missing from the landing bucket") from exc
    if data is None:
        raise ClaimCheckError("claim-check object does not match the size/SHA-256 in the message")
    if ref.content_key is not None:
        data = sealing.decrypt_landing(data, content_key=ref.content_key, tenant=msg.tenant, key=ref.key)
        if ref.plain_sha256 is not None and hashlib.sha256(data).hexdigest() != ref.plain_sha256:
            raise ClaimCheckError("the decrypted claim-check object does not match the plain_sha256 in the message")
    return data


def drop_landing(msg: RecordingMessage, deps: IngestDeps, *, checked: bool = False) -> None:
    """Delete the landing object once its call is stored or refused, and only when it is the
    object the message names: a message cannot get another tenant's or another call's object
    deleted by naming its key. ``checked``: its size and SHA-256 were just verified."""
    if msg.audio.ref is None:
        return
    try:
        check_ref(msg, deps)
    except ClaimCheckError:
        return
    ref = msg.audio.ref
    try:
        if checked or landing_object(msg, deps) is not None:
            deps.store.delete(ref.bucket, ref.key)
        else:
            log.warning("landing object of recording %s left in place: not the object its message names",
                        msg.recording_id)
    except ObjectNotFound:
        pass


# Refusals a replay can cure once the cause is fixed: their landing objects wait for it (the
# landing bucket's lifecycle rule expires them within a day). Every other refusal drops its own.
REPLAYABLE = frozenset({"unknown_tenant", "internal_error", "worker_crash"})


def drop_refused_landing(subject: Subject, reason: str, deps: IngestDeps) -> None:
    if reason in REPLAYABLE or (reason == "unreadable_seal" and not sealing.is_sealed(subject.original)):
        return  # (a plain message refused for want of a seal: `dlq replay` seals it and sends it again)
    try:
        msg = parse_message(subject.original, default_region=deps.settings.default_region)
    except IngestError:
        return  # unreadable: it names nothing we can check
    drop_landing(msg, deps)
