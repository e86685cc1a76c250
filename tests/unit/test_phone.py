"""core.phone: every way telephony writes a number gives one canonical form (E.164 for a valid or
possible number, the marked digits as given for the rest); only what is no number is refused,
and errors never echo it."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import InvalidInput, InvalidNumber
from core.phone import MASK, RAW_PREFIX, is_raw, mask_number, normalise_number, number_forms

E164 = re.compile(r"^\+[1-9]\d{1,19}$")  # "+49 0000" is possible; a valid German number may exceed 15 digits
RAW = re.compile(r"^raw:\+?\d{2,17}$")


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


@pytest.mark.parametrize(("raw", "expected"), [
    ("+33 7 00 00 00 01", "+33700000001"),  # a possible number in a range not allocated (yet)
    ("07 00 00 00 01", "+33700000001"),
    ("tel:+33 7 00 00 00 01", "+33700000001"),
    ("4012", "raw:4012"),  # an internal extension
    ("3615", "raw:3615"), ("112", "raw:112"), ("15", "raw:15"),  # short codes
    ("0612", "raw:0612"),  # too short for France: kept as given, with its trunk 0
    ("06 12 34 56 789", "raw:06123456789"),  # too long for France
    ("+99 123 456 789", "raw:+99123456789"), ("+999 612345678", "raw:+999612345678"),  # unknown country codes
    ("+331234", "raw:+331234"), ("0033 1234", "raw:00331234"),
    ("+49 (0)0000 0", "raw:+49000000"),  # its E.164 would not read back as itself
    ("+621(0)(0)(0)(0)(0)(0)(0)(0)(0)(0)(0)(0)(0)", "raw:+6210000000000000"),  # nor be one (16 digits)
    ("  40-12 ", "raw:4012"), ("tel:4012", "raw:4012"),
    ("raw:4012", "raw:4012"), ("RAW: +99 123", "raw:+99123"),  # the kept form given back
])
def test_numbers_libphonenumber_cannot_validate_are_kept(raw: str, expected: str) -> None:
    assert normalise_number(raw) == expected
    assert normalise_number(expected) == expected


def test_a_kept_number_never_equals_an_e164_one() -> None:
    assert normalise_number("+99 123 456 789") != "+99123456789"
    assert is_raw(normalise_number("4012")) and not is_raw(normalise_number("06 12 34 56 78"))
    assert normalise_number("raw:+33612345678") == f"{RAW_PREFIX}+33612345678" != normalise_number("+33612345678")


@pytest.mark.parametrize(("raw", "forms"), [
    # A request looks under both forms the same digits may have been stored under, before or after
    # libphonenumber's metadata learnt (or forgot) that they are a possible number.
    ("+33 7 00 00 00 01", ("+33700000001", "raw:+33700000001")),
    ("07 00 00 00 01", ("+33700000001", "raw:0700000001")),
    ("+999 612345678", ("raw:+999612345678", "+999612345678")),
    ("4012", ("raw:4012",)),
    ("raw:4012", ("raw:4012",)),
    ("+33 6 12 34 56 78 ext. 12", ("+33612345678",)),
])
def test_a_request_looks_under_every_form_of_the_number(raw: str, forms: tuple[str, ...]) -> None:
    assert number_forms(raw) == forms
    assert number_forms(raw)[0] == normalise_number(raw)


@pytest.mark.parametrize(("raw", "reason"), [
    ("", "empty"), ("   ", "empty"), ("hello", "not a phone number"), ("06 CALL NOW", "not a phone number"),
    ("anonymous 0612", "not a phone number"), ("  --  ", "not a phone number"), ("06#12*34", "not a phone number"),
    ("06+12 34 56 78", "not a phone number"), ("raw:", "not a phone number"), ("raw:abc", "not a phone number"),
    ("7", "too short"), ("+3", "too short"), ("+33 6 12 34 56 78 90 12 34 56", "too long"), ("1" * 18, "too long"),
    ("0" * 100, "too long"), ("06 12 34 56 78" * 6, "too long"),
])
def test_what_is_no_phone_number_is_refused_without_echo(raw: str, reason: str) -> None:
    with pytest.raises(InvalidNumber) as info:
        normalise_number(raw)
    exc = info.value
    assert isinstance(exc, InvalidInput)
    assert exc.code == "invalid_number"
    assert exc.errors and exc.errors[0].loc == ("caller_number",) and exc.errors[0].msg == reason
    digits = re.sub(r"\D", "", raw)
    if len(digits) >= 3:
        assert digits not in re.sub(r"\D", "", str(exc))
    if raw.strip():
        assert raw.strip() not in str(exc)


@given(st.text(max_size=80) | st.from_regex(r"\A(tel:|raw:)?\+?[0-9 .()-]{1,30}\Z"))
@settings(max_examples=500)
def test_any_text_gives_a_stable_canonical_form_or_a_refusal(raw: str) -> None:
    try:
        result = normalise_number(raw)
    except InvalidNumber as exc:
        assert not re.search(r"\d", str(exc))  # the reasons are fixed words: nothing of the input
    else:
        assert E164.match(result) or RAW.match(result), result
        assert normalise_number(raw) == result  # stable
        assert normalise_number(result) == result  # idempotent
        forms = number_forms(raw)
        assert forms[0] == result and all(E164.match(f) or RAW.match(f) for f in forms), forms


@given(st.from_regex(r"\A0[67][0-9]{8}\Z"))
def test_the_e164_path_is_unchanged_for_valid_numbers(national: str) -> None:
    import phonenumbers

    number = phonenumbers.parse(national, "FR")
    if phonenumbers.is_valid_number(number):
        assert normalise_number(national) == phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    else:  # the right length for a French mobile: possible, so E.164 all the same
        assert normalise_number(national) == f"+33{national[1:]}"


def test_mask_keeps_country_first_and_last_two_digits() -> None:
    assert mask_number("+33612345678") == f"+33 6 {MASK * 2} {MASK * 2} {MASK * 2} 78"
    masked_us = mask_number("+16502530000")
    assert masked_us.startswith("+1 6") and masked_us.endswith("00") and "253" not in masked_us


@pytest.mark.parametrize("raw", ["garbage", "", "+331234", "0612345678", "raw:garbage", "raw:12345678901234567890"])
def test_mask_never_echoes_what_is_not_e164(raw: str) -> None:
    masked = mask_number(raw)
    assert "1234" not in masked and "garbage" not in masked


@pytest.mark.parametrize(("kept", "masked"), [
    ("raw:4012", f"raw:{MASK * 4}"), ("raw:+999612345678", f"raw:+{MASK * 10}78"), ("raw:15", f"raw:{MASK * 2}"),
])
def test_mask_of_a_kept_number_keeps_its_marker_and_hides_short_ones_whole(kept: str, masked: str) -> None:
    assert mask_number(kept) == masked


@given(st.text(max_size=40))
def test_mask_never_raises(raw: str) -> None:
    assert isinstance(mask_number(raw), str)
