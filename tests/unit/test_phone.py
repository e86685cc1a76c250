"""core.phone: every way telephony writes a number gives one E.164; errors never echo it."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import InvalidInput, InvalidNumber
from core.phone import MASK, mask_number, normalise_number

E164 = re.compile(r"^\+[1-9]\d{6,14}$")


@pytest.mark.parametrize("raw", [
    "06 12 34 56 78", "06.12.34.56.78", "0612345678", "06-12-34-56-78", "+33 6 12 34 56 78", "+33612345678",
    "0033612345678", "00 33 6 12 34 56 78", "+33 (0)6 12 34 56 78", "+33 (0) 6 12 34 56 78", " 06 12 34 56 78 ",
    "tel:+33612345678",
])
def test_french_formats_all_give_one_e164(raw: str) -> None:
    assert normalise_number(raw) == "+33612345678"


@pytest.mark.parametrize(("raw", "region", "expected"), [
    ("01 23 45 67 89", "FR", "+33123456789"),
    ("0800 123 456", "FR", "+33800123456"),
    ("+1 650 253 0000", "FR", "+16502530000"),
    ("+44 (0)20 7946 0958", "FR", "+442079460958"),
    ("020 7946 0958", "GB", "+442079460958"),
])
def test_other_numbers_and_regions(raw: str, region: str, expected: str) -> None:
    assert normalise_number(raw, region) == expected


def test_extension_is_dropped() -> None:
    assert normalise_number("+33 6 12 34 56 78 ext. 12") == "+33612345678"


@pytest.mark.parametrize("raw", [
    "", "   ", "hello", "0612", "112", "3615", "06 12 34 56 789", "+99 123 456 789", "+331234",
    "0" * 100, "06 12 34 56 78" * 6,
])
def test_invalid_numbers_are_refused_without_echo(raw: str) -> None:
    with pytest.raises(InvalidNumber) as info:
        normalise_number(raw)
    exc = info.value
    assert isinstance(exc, InvalidInput)
    assert exc.code == "invalid_number"
    assert exc.errors and exc.errors[0].loc == ("caller_number",)
    digits = re.sub(r"\D", "", raw)
    if len(digits) >= 3:
        assert digits not in re.sub(r"\D", "", str(exc))
    if raw.strip():
        assert raw.strip() not in str(exc)


@given(st.text(max_size=80) | st.from_regex(r"\A\+?[0-9 .()-]{4,30}\Z"))
@settings(max_examples=300)
def test_any_text_gives_e164_or_invalid_number(raw: str) -> None:
    try:
        result = normalise_number(raw)
    except InvalidNumber as exc:
        assert not re.search(r"\d", str(exc))  # the reasons are fixed words: nothing of the input
    else:
        assert E164.match(result)
        assert normalise_number(result) == result  # idempotent


def test_mask_keeps_country_first_and_last_two_digits() -> None:
    assert mask_number("+33612345678") == f"+33 6 {MASK * 2} {MASK * 2} {MASK * 2} 78"
    masked_us = mask_number("+16502530000")
    assert masked_us.startswith("+1 6") and masked_us.endswith("00") and "253" not in masked_us


@pytest.mark.parametrize("raw", ["garbage", "", "+331234", "0612345678"])
def test_mask_never_echoes_what_is_not_e164(raw: str) -> None:
    masked = mask_number(raw)
    assert "1234" not in masked and "garbage" not in masked


@given(st.text(max_size=40))
def test_mask_never_raises(raw: str) -> None:
    assert isinstance(mask_number(raw), str)
