"""The readers of what a person types (``core.inputs``): each value read, or refused naming the
value and the accepted forms."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, timezone
from typing import Annotated

import pytest
from pydantic import BeforeValidator, TypeAdapter, ValidationError

from core import inputs
from core.errors import InvalidInput, MalformedInput


def refused(read, text, *words: str) -> None:
    with pytest.raises(MalformedInput) as exc:
        read(text)
    assert isinstance(exc.value, InvalidInput)
    for word in words:
        assert word in str(exc.value)


def test_a_recording_is_named_by_its_catalog_id_or_tenant_and_telephony_id() -> None:
    rid = uuid.uuid4()
    assert inputs.recording_ref(str(rid)) == inputs.RecordingRef(id=rid)
    named = inputs.recording_ref(" acme/cv-3610fbaf:1.2 ")
    assert named == inputs.RecordingRef(tenant="acme", telephony_id="cv-3610fbaf:1.2")
    assert str(inputs.recording_ref("acme/cv-1")) == "acme/cv-1"
    for text in ("cv-3610fbaf", "Acme/cv-1", "acme/", "/cv-1", "acme/cv 1", "acme/a/b", ""):
        refused(inputs.recording_ref, text, repr(text.strip()), "TENANT/TELEPHONY_ID", "UUID")


def test_tenant_slugs_have_a_pattern() -> None:
    assert inputs.tenant_slug("acme-fr") == "acme-fr"
    for text in ("Bad Name!", "a", "-acme", "acme-", "ACME", "x" * 64, "acme_fr"):
        refused(inputs.tenant_slug, text, repr(text), "2 to 63")


def test_times_need_their_utc_offset() -> None:
    assert inputs.aware_time("2026-11-23T10:15:00+01:00").utcoffset() == timedelta(hours=1)
    assert inputs.aware_time("2026-11-23T10:15:00Z").tzinfo is not None
    refused(inputs.aware_time, "2026-11-23T10:15:00", "no UTC offset", "2026-11-23T10:15:00+01:00")
    refused(inputs.aware_time, "2026-11-23", "a day, not a time")
    refused(inputs.aware_time, "yesterday", "'yesterday' is not a time")
    assert inputs.day_or_time("2026-11-01") == datetime(2026, 11, 1, tzinfo=timezone.utc)
    refused(inputs.day_or_time, "2026-11-01T08:00", "no UTC offset")
    assert inputs.day("2030-01-31") == date(2030, 1, 31)
    refused(inputs.day, "2026-13-45", "'2026-13-45' is not a day")


def test_numbers_are_bounded_and_named() -> None:
    months = inputs.whole(1, 1200, "months")
    assert months("6") == 6 and months(6) == 6
    for text in ("-1", "0", "1201", "1.5", "many", "1e3"):
        refused(months, text, "months must be a positive whole number (at most 1200)", repr(text))
    days = inputs.amount(0, 3650, "the age (days)")
    assert days("0") == 0 and days("0.5") == 0.5
    for text in ("-5", "1e12", "nan", "inf"):
        refused(days, text, "from 0 to 3650", repr(text))


def test_spans_choices_and_blanks() -> None:
    assert inputs.span_ms("12000-45000") == (12000, 45000)
    for text in ("5-3", "5-5", "-5-10", "1000", "a-b"):
        refused(inputs.span_ms, text, repr(text), "START_MS-END_MS")
    tier = inputs.one_of(("monitoring", "training"), "tier")
    assert tier("training") == "training"
    refused(tier, "production", "'production' is not one of monitoring, training")
    refused(inputs.nonblank("the reason"), "  ", "the reason is empty")
    refused(inputs.copy_id, "nope", "copy 'nope' is not a catalog id")


def test_a_reader_as_a_validator_gives_its_message_as_is() -> None:
    adapter = TypeAdapter(Annotated[object, BeforeValidator(inputs.parsed(inputs.tenant_slug))])
    assert adapter.validate_python("acme") == "acme"
    with pytest.raises(ValidationError) as exc:
        adapter.validate_python("Bad {Name}!")
    assert exc.value.errors()[0]["msg"].startswith("tenant 'Bad {Name}!' is not a tenant slug")
