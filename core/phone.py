"""Phone numbers: one canonical form (E.164, or the digits as given) and one safe-to-show form.

Data-subject rights are exercised *by number*: an objection, an erasure or an export must
find every recording of "06 12 34 56 78" whether telephony wrote it that way, as
"+33612345678" or as "0033 6 12 34 56 78".  So every number is normalised once, at the edge,
and only that form is hashed, stored or compared.  A number libphonenumber cannot place (an
internal extension, a short code, a range allocated since its metadata was made) is still a
caller's number: it is kept as given, in a marked form of its own (``normalise_number``), so a
request with the same string finds it.

Nothing here ever puts the number into an exception message: errors reach logs and the
dead-letter topic, which must stay free of personal data.
"""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, ValidationResult

from core.errors import FieldError, InvalidNumber

MAX_INPUT_LENGTH = 64  # a formatted number with spaces, "(0)" and "+33" fits easily
MASK = "\u2022"  # bullet

RAW_PREFIX = "raw:"  # a number kept as given: never E.164, so never equal to one
MIN_DIGITS, MAX_DIGITS = 2, 17  # "15" (a short code) .. E.164's 15 digits behind an international prefix
_NUMERIC = re.compile(r"^\+?[0-9 .()/-]+$")
_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")


def _invalid(reason: str) -> InvalidNumber:
    return InvalidNumber(f"caller number is invalid: {reason}",
                         errors=[FieldError(("caller_number",), "invalid_number", reason)])


WITHHELD = "withheld"
# What PBXs and carriers send for a caller who withheld their number (CLIR), besides nothing.
WITHHELD_MARKERS = frozenset({"", "withheld", "anonymous", "private", "restricted", "unknown", "unavailable",
                              "blocked", "unknown caller", "no caller id"})


def is_withheld(raw: object) -> bool:
    """True for an absent number or a withheld / anonymous marker (any case, any spacing)."""
    return raw is None or (isinstance(raw, str) and " ".join(raw.split()).lower() in WITHHELD_MARKERS)


def normalise_number(raw: str, default_region: str = "FR") -> str:
    """The canonical form of a caller number, or ``InvalidNumber`` for what is not one at all.

    A recorder must not drop a real call because libphonenumber does not know its range yet, so
    only letters, symbols, blanks and absurd lengths are refused.  The rest is kept:

    - a valid number, or a *possible* one (the right length for its country, in a range not
      allocated yet: "+33 7 00 00 00 01"), in E.164: "+33700000001".  National formats are
      read in ``default_region``; "+33 (0)6...", "0033...", separators and "tel:" are accepted,
      and on a valid number an extension ("... ext. 12") is dropped: it does not identify the
      person;
    - anything else made of 2 to 17 digits (a short code "3615", an internal extension
      "4012", an unknown country code) as given: ``RAW_PREFIX`` + its digits, with the leading
      "+" if it had one ("raw:4012", "raw:+999612345678").  The prefix means it can never be
      mistaken for, or hash like, an E.164 number; a raw form given back comes back unchanged.

    The same input always gives the same form, and the form normalises to itself.
    """
    if not isinstance(raw, str) or not raw.strip():
        raise _invalid("empty")
    if len(raw) > MAX_INPUT_LENGTH:
        raise _invalid("too long")
    text = raw.strip()
    if text[:len(RAW_PREFIX)].lower() == RAW_PREFIX:
        return _raw(text[len(RAW_PREFIX):].strip())
    try:
        number = phonenumbers.parse(text, default_region)
    except NumberParseException:
        number = None
    if number is not None and phonenumbers.is_valid_number(number):
        return phonenumbers.format_number(number, PhoneNumberFormat.E164)
    digits_only = _digits_only(text)
    if number is not None and digits_only and not number.extension and (
            phonenumbers.is_possible_number_with_reason(number) == ValidationResult.IS_POSSIBLE):
        e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
        if _reads_back(e164):
            return e164
    return _raw(digits_only if digits_only is not None else text)


def _reads_back(e164: str) -> bool:
    """The E.164 form is one (at most 15 digits) and parses to itself.  Not so for every
    possible-but-invalid number: with a "(0)" and a national number of zeros, "+49 (0)0000 0"
    gives "+4900000", which reads as "+490000"; such a string is kept as given, so the canonical
    form stays a fixed point."""
    if not _E164.match(e164):
        return False
    try:
        return phonenumbers.format_number(phonenumbers.parse(e164, None), PhoneNumberFormat.E164) == e164
    except NumberParseException:
        return False


def _digits_only(text: str) -> str | None:
    """``text`` without a "tel:" scheme, when the rest is digits and separators only."""
    rest = text[4:].strip() if text[:4].lower() == "tel:" else text
    return rest if _NUMERIC.match(rest) else None


def _raw(text: str) -> str:
    if not _NUMERIC.match(text):
        raise _invalid("not a phone number")
    digits = "".join(ch for ch in text if ch.isdigit())
    if not digits:
        raise _invalid("not a phone number")
    if len(digits) < MIN_DIGITS:
        raise _invalid("too short")
    if len(digits) > MAX_DIGITS:
        raise _invalid("too long")
    return f"{RAW_PREFIX}{'+' if text.startswith('+') else ''}{digits}"


def number_forms(raw: str, default_region: str = "FR") -> tuple[str, ...]:
    """Every form a recording of ``raw`` may be stored under, its canonical form first.

    Whether a string is a *possible* number depends on libphonenumber's metadata, which grows:
    a call kept as "raw:+999612345678" today is "+999612345678" once that country code is
    known, and the reverse.  A request (erasure, objection, export...) must find the calls of
    before and after such an upgrade, so it looks under both the canonical form and the other
    one the same digits have."""
    canonical = normalise_number(raw, default_region)
    if is_raw(canonical):
        digits = canonical[len(RAW_PREFIX):]
        return (canonical, digits) if _E164.match(digits) else (canonical,)
    text = raw.strip()
    digits_only = _digits_only(text)
    if digits_only is None:
        return (canonical,)
    try:
        return tuple(dict.fromkeys((canonical, _raw(digits_only))))
    except InvalidNumber:
        return (canonical,)


def is_raw(number: str) -> bool:
    """A number kept as given (not E.164): see ``normalise_number``."""
    return number.startswith(RAW_PREFIX)


def mask_number(e164: str) -> str:
    """A form for IT views and logs: "+33 6 •• •• •• 78".

    Keeps the country code, the first digit of the national number (mobile or landline)
    when the number is long enough that this reveals little, and the last two digits, so
    an operator can tell two calls apart without learning the number.  Never raises and
    never echoes its input: a string that is not a number comes back fully masked.  A number
    kept as given keeps its marker and, from six digits, its last two: "raw:••••", "raw:+•••••••89".
    """
    if isinstance(e164, str) and is_raw(e164):
        return _mask_raw(e164[len(RAW_PREFIX):])
    try:
        number = phonenumbers.parse(e164, None)
    except (NumberParseException, TypeError):
        return f"+{MASK * 3}"
    formatted = phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)
    prefix = f"+{number.country_code}"
    national = formatted[len(prefix):] if formatted.startswith(prefix) else formatted
    digits = sum(ch.isdigit() for ch in national)
    keep_first, keep_last = digits >= 8, 2 if digits >= 6 else 0
    masked, seen = [], 0
    for ch in national:
        if ch.isdigit():
            seen += 1
            visible = (keep_first and seen == 1) or seen > digits - keep_last
            masked.append(ch if visible else MASK)
        else:
            masked.append(ch)
    return prefix + "".join(masked)


def _mask_raw(digits: str) -> str:
    plus, digits = ("+", digits[1:]) if digits.startswith("+") else ("", digits)
    if not digits.isdigit() or not MIN_DIGITS <= len(digits) <= MAX_DIGITS:
        return f"{RAW_PREFIX}{MASK * 3}"
    keep = 2 if len(digits) >= 6 else 0
    return f"{RAW_PREFIX}{plus}{MASK * (len(digits) - keep)}{digits[len(digits) - keep:]}"
