"""Request and response bodies of the API (pydantic): the OpenAPI document is built from them.

Free text that reaches the catalog (reasons, tickets, reports, filters) refuses NUL and
unpaired surrogates, which PostgreSQL cannot store; the schema says so, so a client (or
schemathesis) gets a 422 instead of a database error.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field

from core.phone import MAX_INPUT_LENGTH, MIN_DIGITS
from core.vocabulary import Tier

from ..settings import BREAK_GLASS_CEILING_MINUTES

NewCopyTier = Literal[Tier.MONITORING, Tier.TRAINING, Tier.COMPLAINT_EXTRACT]  # core.vocabulary.COPY_TIERS


def _storable(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


Text = Annotated[str, AfterValidator(_storable)]
Reason = Annotated[str, Field(min_length=1, max_length=500), AfterValidator(_storable), AfterValidator(_not_blank)]


class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine code, e.g. forbidden, not_found, range_not_satisfiable")
    message: str
    hint: str | None = None
    fields: list[dict[str, Any]] | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error statuses a route can answer."""
    return {status: {"model": ErrorBody} for status in (401, 403, 422, *statuses)}


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    catalog: Literal["ok", "unavailable"]


class CopySummary(BaseModel):
    id: uuid.UUID
    tier: Tier
    expires_at: datetime
    hold: bool
    audio_bytes: int = Field(description="length of the decrypted audio (what a full download returns)")
    stored_bytes: int = Field(description="size of the encrypted object")


class CopyDetail(CopySummary):
    created_at: datetime
    created_by: str
    reason: str = Field(description="complaint / request reference of an extract; empty otherwise")
    has_training_report: bool
    hold_reason: str | None = None
    hold_actor: str | None = None
    hold_at: datetime | None = None


class Redaction(BaseModel):
    start_ms: int
    end_ms: int


class RecordingSummary(BaseModel):
    id: uuid.UUID
    tenant: str
    external_id: str
    started_at: datetime
    direction: str
    caller_number: str = Field(description=(
        "E.164, or \"raw:\" and the digits as given for a number that is not a possible one (an extension, "
        "a short code); masked for IT; \"withheld\" when the caller withheld it"))
    numbers_masked: bool
    agent_id: str
    team_id: str | None
    duration_ms: int
    audio_format: str
    restricted: bool
    copies: list[CopySummary]


class RecordingDetail(RecordingSummary):
    restricted_at: datetime | None = None
    created_at: datetime
    redactions: list[Redaction] = Field(description="spans silenced at ingest (payment data)")
    retained_until: datetime | None = Field(description="latest expiry of the visible copies, held ones aside")
    held: bool = Field(description="at least one visible copy is under legal hold (it does not expire)")
    copies: list[CopyDetail]  # type: ignore[assignment]


MAX_PAGE = 200
Cursor = Annotated[Text, Field(max_length=200, description="opaque: the next_cursor of the previous page")]
FilterText = Annotated[Text, Field(max_length=100)]


class SearchResult(BaseModel):
    items: list[RecordingSummary]
    limit: int
    next_cursor: str | None = Field(description="pass as cursor for the next page; null on the last page")


class SearchRequest(BaseModel):
    """``POST /recordings/search``: the filters in the body, so a number never travels in a URL."""

    number: Annotated[Text, Field(min_length=MIN_DIGITS, max_length=MAX_INPUT_LENGTH)] | None = Field(
        None, description="caller number, any usual format; \"4012\" finds an extension stored as given")
    agent: FilterText | None = None
    team: FilterText | None = None
    start: datetime | None = Field(None, alias="from", description="calls started at or after")
    end: datetime | None = Field(None, alias="to", description="calls started before")
    tier: Tier | None = None
    tenant: Annotated[Text, Field(max_length=64)] | None = None
    limit: int = Field(50, ge=1, le=MAX_PAGE)
    cursor: Cursor | None = None

    model_config = {"populate_by_name": True, "extra": "forbid"}


class NewCopy(BaseModel):
    tier: NewCopyTier
    reason: Annotated[Text, Field(max_length=500)] = Field(
        "", description="complaint or GDPR request reference: required for complaint-extract, empty otherwise")
    training_report: Annotated[Text, Field(max_length=20000)] | None = Field(
        None, description="the coach's report: required for a training copy")


class CopyCreated(BaseModel):
    copy_id: uuid.UUID
    recording_id: uuid.UUID
    tier: NewCopyTier
    expires_at: datetime
    created: bool = Field(description="false when that copy already existed (the request is idempotent)")


class HoldRequest(BaseModel):
    reason: Reason = Field(description="case or litigation reference")


class HoldOutcome(BaseModel):
    changed: list[uuid.UUID]
    unchanged: list[uuid.UUID]
    refused: list[uuid.UUID] = Field(description="copies already being deleted (expired): not held")
    mirrored: int = Field(description="copies whose S3 object legal hold was set or cleared too")


class ReportRow(BaseModel):
    tenant: str
    tier: Tier
    copies: int
    bytes: int
    held: int
    expiring: dict[str, int] = Field(description="days -> unheld copies expiring within them")


class LifecycleReport(BaseModel):
    generated_at: datetime
    tenants: list[str]
    rows: list[ReportRow]


class AuditEntry(BaseModel):
    seq: int
    at: datetime
    tenant_id: str | None = Field(None, description="the tenant the entry is about; null: group-level or system")
    actor: str
    role: str
    action: str
    target_type: str
    target_id: str
    outcome: str
    reason: str | None
    detail: dict[str, Any] | list[Any] | None
    prev_hash: str | None
    hash: str


class AuditPage(BaseModel):
    entries: list[AuditEntry]
    next_after_seq: int | None = Field(description="pass as after_seq for the next page; null at the end")
    next_before_seq: int | None = Field(None, description=(
        "newest first: pass as before_seq for the next (older) page; null at the end"))


class AuditVerification(BaseModel):
    ok: bool
    entries: int
    first_bad_seq: int | None = None
    problem: str | None = None
    anchors: int = Field(0, description="signed anchors (outside the catalog) the chain was checked against")
    anchored_seq: int | None = Field(None, description="the newest anchored entry; later ones: chain only")


class BreakGlassRequest(BaseModel):
    ticket: Annotated[Text, Field(min_length=1, max_length=100)] = Field(description="incident ticket reference")
    minutes: int = Field(ge=1, le=BREAK_GLASS_CEILING_MINUTES, description=(
        "how long; the maximum is this deployment's CALLVAULT_ACCESS_BREAK_GLASS_MAX_MINUTES"))
    recording_id: uuid.UUID = Field(description="the one recording the grant opens")
    tiers: list[Tier] = Field(min_length=1, max_length=4, description="the tiers of it the grant opens")


class BreakGlassGrant(BaseModel):
    ticket: str
    expires_at: datetime
    recording_id: uuid.UUID
    tiers: list[Tier]
