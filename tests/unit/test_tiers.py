from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.vocabulary import Tier
from lifecycle.tiers import add_months, expires_at

UTC = timezone.utc


@pytest.mark.parametrize("start, months, expected", [
    ("2026-11-30T10:00", 3, "2027-02-28T10:00"),
    ("2027-11-30T10:00", 3, "2028-02-29T10:00"),  # leap year
    ("2026-01-31T00:00", 1, "2026-02-28T00:00"),
    ("2026-03-15T23:59", 12, "2027-03-15T23:59"),
    ("2026-05-31T08:00", 36, "2029-05-31T08:00"),
])
def test_calendar_months_in_utc(start, months, expected):
    got = add_months(datetime.fromisoformat(start).replace(tzinfo=UTC), months)
    assert got == datetime.fromisoformat(expected).replace(tzinfo=UTC)


def test_months_are_counted_in_utc_not_local_time():
    paris = timezone(timedelta(hours=1))
    # 00:30 in Paris on March 1st is still February 28th in UTC.
    got = add_months(datetime(2026, 3, 1, 0, 30, tzinfo=paris), 1)
    assert got == datetime(2026, 3, 28, 23, 30, tzinfo=UTC)


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError):
        add_months(datetime(2026, 1, 1), 1)


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)),
       st.integers(0, 120))
def test_add_months_never_goes_backwards_and_keeps_time_of_day(moment, months):
    got = add_months(moment, months)
    assert got >= moment
    assert got.time() == moment.time()
    assert (got.year - moment.year) * 12 + got.month - moment.month == months


def test_production_counts_from_the_call_other_tiers_from_the_copy():
    call = datetime(2026, 1, 10, tzinfo=UTC)
    copy = datetime(2026, 2, 20, tzinfo=UTC)
    assert expires_at(Tier.PRODUCTION, call_started_at=call, copy_created_at=copy) == datetime(2026, 4, 10, tzinfo=UTC)
    assert expires_at(Tier.TRAINING, call_started_at=call, copy_created_at=copy) == datetime(2027, 2, 20, tzinfo=UTC)
    assert expires_at(Tier.COMPLAINT_EXTRACT, call_started_at=call, copy_created_at=copy,
                      overrides={"complaint-extract": 24}) == datetime(2028, 2, 20, tzinfo=UTC)
