"""Tiers and their retention arithmetic. Pure: no I/O, no clock reads (pass ``now``)."""

from __future__ import annotations

import calendar
from datetime import datetime, timezone

from core.vocabulary import DEFAULT_MAX_MONTHS, DEFAULT_MIN_MONTHS, DEFAULT_RETENTION_MONTHS, Tier

__all__ = ["DEFAULT_MAX_MONTHS", "DEFAULT_MIN_MONTHS", "DEFAULT_RETENTION_MONTHS", "Tier", "add_months",
           "expires_at", "retention_months"]

def add_months(moment: datetime, months: int) -> datetime:
    """Calendar months in UTC, clamped to the month's last day (Nov 30 + 3 = Feb 28)."""
    if moment.tzinfo is None:
        raise ValueError("retention arithmetic needs an aware datetime")
    moment = moment.astimezone(timezone.utc)
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def retention_months(tier: Tier, overrides: dict[str, int] | None = None) -> int:
    """The tenant's months for a tier: its override if any, else the policy default."""
    if overrides and tier.value in overrides:
        return overrides[tier.value]
    return DEFAULT_RETENTION_MONTHS[tier]


def expires_at(tier: Tier, *, call_started_at: datetime, copy_created_at: datetime,
               overrides: dict[str, int] | None = None) -> datetime:
    """When a copy expires: production counts from the call, every other tier from the copy."""
    anchor = call_started_at if tier is Tier.PRODUCTION else copy_created_at
    return add_months(anchor, retention_months(tier, overrides))
