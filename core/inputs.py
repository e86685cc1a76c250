"""Values a person types, read where they enter: tenant slugs, recording ids, times, counts.

Each reader takes the text as typed and returns the value, or raises ``MalformedInput``
naming the text and the forms it accepts. The command line reads its options with them
(``parsed`` adapts a reader to Typer's ``parser=``, a pydantic validator, so the message
comes out as "Invalid value for '--started-at': ..." and the command exits with code 2);
services that take the same values from any entry point check them with the same reader
(``lifecycle.service.add_tenant`` and the tenant slug).

A recording has two names a person may use: its catalog id (a UUID, what the API and the
worker's events show) and ``TENANT/TELEPHONY_ID``, the id telephony gave it under its tenant
(what ``callvault push`` prints). ``recording_ref`` reads either; the catalog resolves the
second (``lifecycle.service.resolve_recording``).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any, Callable, Iterable, TypeVar

from pydantic_core import PydanticCustomError

from .errors import MalformedInput

T = TypeVar("T")

# 2 to 63 lower-case letters, digits and inner hyphens: a DNS label, a Kafka topic part, a path segment.
TENANT_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,61}[a-z0-9]")
_TENANT_NAMED = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")  # a tenant as named in a reference (older ones: 1 char)
TELEPHONY_ID = re.compile(r"[A-Za-z0-9._:-]{1,200}")  # the message schema's recording_id
EXAMPLE_UUID = "3f2b6c1e-9a4d-4e1b-8c7f-0d5e6a7b8c9d"
EXAMPLE_TIME = "2026-11-23T10:15:00+01:00"
RECORDING_FORMS = (f"give its catalog id, a UUID such as {EXAMPLE_UUID}, or TENANT/TELEPHONY_ID "
                   "as `callvault push` prints it, e.g. acme/cv-3610fbaf")


def tenant_slug(text: str) -> str:
    if not isinstance(text, str) or not TENANT_SLUG.fullmatch(text):
        raise MalformedInput(f"tenant {text!r} is not a tenant slug: use 2 to 63 lower-case letters, digits "
                             "and inner hyphens, e.g. acme-fr")
    return text


def telephony_id(text: str) -> str:
    if not TELEPHONY_ID.fullmatch(text):
        raise MalformedInput(f"telephony id {text!r} is not one: use 1 to 200 letters, digits and . _ : -, "
                             "e.g. cv-3610fbaf")
    return text


def catalog_id(text: str, what: str = "id") -> uuid.UUID:
    try:
        return text if isinstance(text, uuid.UUID) else uuid.UUID(text.strip())
    except (ValueError, AttributeError):
        raise MalformedInput(f"{what} {text!r} is not a catalog id: give a UUID such as {EXAMPLE_UUID}") from None


def copy_id(text: str) -> uuid.UUID:
    return catalog_id(text, "copy")


@dataclass(frozen=True)
class RecordingRef:
    """A recording as a person names it: its catalog id, or its tenant and telephony id."""

    id: uuid.UUID | None = None
    tenant: str | None = None
    telephony_id: str | None = None

    def __str__(self) -> str:
        return str(self.id) if self.id is not None else f"{self.tenant}/{self.telephony_id}"


def recording_ref(text: str) -> RecordingRef:
    if isinstance(text, RecordingRef):
        return text
    text = text.strip()
    try:
        return RecordingRef(id=uuid.UUID(text))
    except ValueError:
        pass
    tenant, sep, tel = text.partition("/")
    if sep and _TENANT_NAMED.fullmatch(tenant) and TELEPHONY_ID.fullmatch(tel):
        return RecordingRef(tenant=tenant, telephony_id=tel)
    raise MalformedInput(f"recording {text!r} is not a recording id: {RECORDING_FORMS}")


def aware_time(text: str) -> datetime:
    """A time with its UTC offset (ISO 8601: ``2026-11-23T10:15:00+01:00``, ``...Z``)."""
    if isinstance(text, datetime) and text.tzinfo is not None:
        return text
    shown = str(text).strip()
    try:
        value = datetime.fromisoformat(shown)
    except ValueError:
        raise MalformedInput(f"{shown!r} is not a time: write it as {EXAMPLE_TIME}, ISO 8601 with its UTC "
                             "offset (Z for UTC)") from None
    if value.tzinfo is None:
        if len(shown) == 10:
            raise MalformedInput(f"{shown!r} is a day, not a time: give the time with its UTC offset, "
                                 f"e.g. {shown}T00:00:00+01:00")
        raise MalformedInput(f"{shown!r} has no UTC offset: add one such as +01:00, e.g. {shown}+01:00, "
                             "or Z for UTC")
    return value


def day_or_time(text: str) -> datetime:
    """A day (UTC midnight) or a time with its UTC offset; a time without one is refused."""
    shown = str(text).strip()
    if len(shown) == 10:
        try:
            return datetime.combine(date.fromisoformat(shown), datetime.min.time(), tzinfo=timezone.utc)
        except ValueError:
            raise MalformedInput(f"{shown!r} is not a day: write it as 2026-11-01") from None
    return aware_time(shown)


def day(text: str) -> date:
    try:
        return text if isinstance(text, date) else date.fromisoformat(str(text).strip())
    except ValueError:
        raise MalformedInput(f"{text!r} is not a day: write it as 2026-12-31") from None


def whole(lo: int, hi: int, what: str) -> Callable[[str], int]:
    """A reader of a whole number from ``lo`` to ``hi``."""
    def read(text: Any) -> int:
        try:
            value = text if isinstance(text, int) else int(str(text).strip())
        except ValueError:
            value = None
        if value is None or not lo <= value <= hi:
            raise MalformedInput(f"{what} must be {_range(lo, hi, 'whole number')}, not {text!r}")
        return value
    return read


def amount(lo: float, hi: float, what: str) -> Callable[[str], float]:
    """A reader of a number (decimals allowed) from ``lo`` to ``hi``."""
    def read(text: Any) -> float:
        try:
            value = float(text) if isinstance(text, (int, float)) else float(str(text).strip())
        except ValueError:
            value = float("nan")
        if not lo <= value <= hi:  # NaN fails too
            raise MalformedInput(f"{what} must be {_range(lo, hi, 'number')}, not {text!r}")
        return value
    return read


def _range(lo: float, hi: float, kind: str) -> str:
    if lo == 1:
        return f"a positive {kind} (at most {hi:g})"
    return f"a {kind} from {lo:g} to {hi:g}"


def span_ms(text: str) -> tuple[int, int]:
    """A redaction span ``START_MS-END_MS`` (ms from the start of the audio, end exclusive)."""
    start, sep, end = str(text).strip().partition("-")
    if sep and start.isdigit() and end.isdigit() and int(start) < int(end):
        return int(start), int(end)
    raise MalformedInput(f"redaction span {text!r} is not START_MS-END_MS: two whole numbers of "
                         "milliseconds from the start of the audio, the first smaller, e.g. 12000-45000")


def one_of(values: Iterable[Any], what: str) -> Callable[[str], Any]:
    """A reader of one of ``values`` (StrEnum members compare equal to their text)."""
    allowed = list(values)

    def read(text: Any) -> Any:
        for value in allowed:
            if str(text).strip() == str(value):
                return value
        raise MalformedInput(f"{what} {text!r} is not one of {', '.join(str(v) for v in allowed)}")
    return read


def nonblank(what: str) -> Callable[[str], str]:
    def read(text: str) -> str:
        if not str(text).strip():
            raise MalformedInput(f"{what} is empty: give one")
        return str(text).strip()
    return read


def parsed(read: Callable[[str], T]) -> Callable[[str], T]:
    """``read`` as a pydantic validator (Typer's ``parser=``): its message is the validation error's."""
    def validate(text: str) -> T:
        try:
            return read(text)
        except MalformedInput as exc:
            raise PydanticCustomError("malformed_input", "{message}", {"message": str(exc)}) from None
    return validate
