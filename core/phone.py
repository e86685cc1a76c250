"""Phone numbers: one canonical form (E.164) and one safe-to-show form (masked).

Data-subject rights are exercised *by number*: an objection, an erasure or an export must
find every recording of "06 12 34 56 78" whether telephony wrote it that way, as
"+33612345678" or as "0033 6 12 34 56 78".  So every number is normalised to E.164 once, at
the edge, and only that form is hashed, stored or compared.

Nothing here ever puts the number into an exception message: errors reach logs and the
dead-letter topic, which must stay free of personal data.
"""

from __future__ import annotations

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, ValidationResult

from core.errors import FieldError, InvalidNumber

MAX_INPUT_LENGTH = 64  # a formatted number with spaces, "(0)" and "+33" fits easily
MASK = "\u2022"  # bullet

_PARSE_REASONS = {
    NumberParseException.INVALID_COUNTRY_CODE: "unknown country code",
    NumberParseException.NOT_A_NUMBER: "not a phone number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
    NumberParseException.TOO_SHORT_NSN: "too short",
    NumberParseException.TOO_LONG: "too long",
}
_POSSIBLE_REASONS = {
    ValidationResult.INVALID_COUNTRY_CODE: "unknown country code",
    ValidationResult.TOO_SHORT: "too short",
    ValidationResult.TOO_LONG: "too long",
    ValidationResult.INVALID_LENGTH: "wrong length for its country",
}


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
    """Return ``raw`` in E.164 ("+33612345678"), or raise ``InvalidNumber``.

    National formats are read in ``default_region`` (a French site sends "06 12 34 56 78");
    "+33 (0)6...", "0033..." and separators (spaces, dots, dashes) are all accepted.  The
    number must be *valid* (an allocated range), not merely the right length, so typos
    and short codes ("3615", "112") are refused.  An extension ("... ext. 12") is dropped:
    it does not identify the person.
    """
    if not isinstance(raw, str) or not raw.strip():
        raise _invalid("empty")
    if len(raw) > MAX_INPUT_LENGTH:
        raise _invalid("too long")
    try:
        number = phonenumbers.parse(raw, default_region)
    except NumberParseException as exc:
        raise _invalid(_PARSE_REASONS.get(exc.error_type, "not a phone number")) from None
    possible = phonenumbers.is_possible_number_with_reason(number)
    if possible not in (ValidationResult.IS_POSSIBLE, ValidationResult.IS_POSSIBLE_LOCAL_ONLY):
        raise _invalid(_POSSIBLE_REASONS.get(possible, "not a phone number"))
    if not phonenumbers.is_valid_number(number):
        raise _invalid("not an allocated number for its country")
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def mask_number(e164: str) -> str:
    """A form for IT views and logs: "+33 6 •• •• •• 78".

    Keeps the country code, the first digit of the national number (mobile or landline)
    when the number is long enough that this reveals little, and the last two digits, so
    an operator can tell two calls apart without learning the number.  Never raises and
    never echoes its input: a string that is not a number comes back fully masked.
    """
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
