"""The domain's words, each spelled once: tiers, roles, permissions and audit action names.

The catalog's column types, the policy, the API models, the console and the audit trail all
import these. A second spelling (a tuple of strings, a ``Literal``, a dict keyed by strings)
drifts on the first rename; a StrEnum does not, and it still compares equal to its value, so
rows read back from the catalog match the members.

Names follow ``resource:...:verb``. A permission (``Action``) names a decision the policy
takes; the audit trail records it under that name with the outcome ``allowed`` or ``denied``.
What then happens is recorded under an ``AuditAction`` with the outcome ``done`` (or the
repair's outcome): a hold through the API writes ``copy:hold:set`` twice, once decided, once
done.
"""

from __future__ import annotations

from enum import StrEnum


class Tier(StrEnum):
    """Why a copy exists, which fixes how long it may live (``lifecycle.tiers``)."""

    PRODUCTION = "production"
    MONITORING = "monitoring"
    TRAINING = "training"
    COMPLAINT_EXTRACT = "complaint-extract"


# The policy's retention per tier (months); ``lifecycle.tiers`` does the arithmetic.
# Each tenant may override within the legal bounds below.
DEFAULT_RETENTION_MONTHS: dict[Tier, int] = {
    Tier.PRODUCTION: 3,
    Tier.MONITORING: 3,
    Tier.TRAINING: 12,
    Tier.COMPLAINT_EXTRACT: 36,
}

# Legal bounds an override must respect (configurable in lifecycle settings).
DEFAULT_MIN_MONTHS: dict[Tier, int] = {tier: 1 for tier in Tier}
DEFAULT_MAX_MONTHS: dict[Tier, int] = {
    Tier.PRODUCTION: 6,
    Tier.MONITORING: 6,
    Tier.TRAINING: 12,
    Tier.COMPLAINT_EXTRACT: 60,
}


# The tiers a person may create a copy in (production copies are made by ingest only).
COPY_TIERS: tuple[Tier, ...] = (Tier.MONITORING, Tier.TRAINING, Tier.COMPLAINT_EXTRACT)


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class Role(StrEnum):
    CONSULTANT = "consultant"
    MANAGER = "manager"
    COACH = "coach"
    INTERNAL_CONTROL = "internal-control"
    IT = "it"
    TELEPHONY = "telephony"  # a system (a PBX): pushes its tenants' calls, reads their ingest status


class Relation(StrEnum):
    """How a user belongs to a team."""

    MEMBER = "member"
    MANAGER = "manager"
    COACH = "coach"


class Action(StrEnum):
    """Permissions named ``resource:...:verb``; each decision is audited under this name."""

    SEARCH = "recording:search"
    SEARCH_BY_NUMBER = "recording:search:number"
    VIEW_METADATA = "recording:metadata:view"
    STREAM = "recording:audio:stream"
    EXPORT = "recording:audio:export"
    COPY_MONITORING = "copy:monitoring:create"
    COPY_TRAINING = "copy:training:create"
    COPY_EXTRACT = "copy:extract:create"
    HOLD = "copy:hold:set"
    RELEASE_HOLD = "copy:hold:release"
    DELETE = "copy:delete"
    SUBJECT_REQUEST = "subject:request:run"
    AUDIT_READ = "audit:read"
    LIFECYCLE_RUN = "lifecycle:sweep:run"
    REPORT_VIEW = "lifecycle:report:view"
    BREAK_GLASS = "recording:break-glass:open"
    DLQ_READ = "ingest:dead-letters:read"
    DLQ_MANAGE = "ingest:dead-letters:manage"
    RETENTION_SET = "tenant:retention:set"
    PUSH = "recording:ingest:push"
    INGEST_STATUS = "recording:ingest:status"


# The permission that rules on creating a copy in each tier a person may create.
COPY_ACTIONS: dict[Tier, Action] = {
    Tier.MONITORING: Action.COPY_MONITORING,
    Tier.TRAINING: Action.COPY_TRAINING,
    Tier.COMPLAINT_EXTRACT: Action.COPY_EXTRACT,
}


class AuditAction(StrEnum):
    """What was done, as the audit trail names it (beside the decisions, named by ``Action``)."""

    COPY_CREATE = "copy:create"
    COPY_HOLD_SET = Action.HOLD.value
    COPY_HOLD_RELEASE = Action.RELEASE_HOLD.value
    COPY_HOLD_REPLAY = "copy:hold:replay"
    COPY_DELETE = Action.DELETE.value
    RETENTION_SET = Action.RETENTION_SET.value
    RETENTION_REPLAY = "tenant:retention:replay"  # a retention change re-applied after a restore
    SUBJECT_OBJECT = "subject:object"
    SUBJECT_RESTRICT = "subject:restrict"
    SUBJECT_LIFT = "subject:lift"
    SUBJECT_ERASE = "subject:erase"
    SUBJECT_ERASE_REPLAY = "subject:erase:replay"
    SUBJECT_RIGHTS_REPLAY = "subject:rights:replay"  # objections and restrictions re-applied after a restore
    SUBJECT_RECTIFY = "subject:rectify"
    SUBJECT_EXPORT = "subject:export"
    SUBJECT_EXPORT_DOWNLOAD = "subject:export:download"
    USER_ADD = "user:add"
    USER_REVOKE = "user:revoke"
    USER_REVOKE_REPLAY = "user:revoke:replay"  # a revocation re-applied after a restore
    API_REQUEST = "api:request"
    DLQ_REPLAY = "dlq:replay"
    DLQ_PURGE = "dlq:purge"
    RECONCILE_ORPHAN_OBJECT = "reconcile:orphan-object:delete"
    RECONCILE_DANGLING_COPY = "reconcile:dangling-copy:delete"
    RECONCILE_EMPTY_RECORDING = "reconcile:empty-recording:delete"


class Outcome(StrEnum):
    """An audit entry's outcome: a decision's (allowed, denied) or an act's (done, failed)."""

    ALLOWED = "allowed"
    DENIED = "denied"
    DONE = "done"
    FAILED = "failed"


# Why the audio of a copy past its expiry and not held is refused, to everyone, until the sweep.
EXPIRED = "expired, awaiting deletion"

# Who acts when no person does (the audit trail's ``role`` for jobs).
SYSTEM_ROLE = "system"


class Door(StrEnum):
    """How a call came in through a front door for telephony without a Kafka client."""

    HTTP = "http"
    S3_DROP = "s3-drop"


class PushOutcome(StrEnum):
    """What the worker made of a pushed call (``pushes.outcome``; none yet: queued)."""

    STORED = "stored"
    SUPPRESSED = "suppressed"
    EXPIRED_ON_ARRIVAL = "expired-on-arrival"
    DEAD_LETTERED = "dead-lettered"
    ERASED_ON_ARRIVAL = "erased-on-arrival"  # an erasure reached it before it arrived (``catalog.erasures``)
