"""The root of every error callvault raises on purpose.

    CallvaultError
    ├── ConfigurationError            a setting is missing, malformed or refused
    ├── InvalidInput                  a value from outside fails validation (``errors`` lists each field)
    │   ├── MalformedInput            a value typed by a person cannot be read as what was asked
    │   │                             (``core.inputs``; the CLI's usage error, exit code 2)
    │   └── InvalidNumber             a phone number that is not one (``core.phone``)
    ├── NotFound                      what was asked for does not exist (each package's own is one:
    │                                 storage ObjectNotFound, lifecycle NotFound, access NotFound)
    ├── stack errors (deploy.local.stack)
    │   ├── ServerStartError          a local server did not come up (names it, shows its log)
    │   └── PortInUseError            a port the stack needs is taken by something else
    ├── storage errors (storage.exceptions)
    ├── ingest errors (ingest.exceptions; its InvalidMessage is an InvalidInput)
    ├── lifecycle errors (lifecycle.exceptions)
    └── access errors (access.exceptions)

Vendor exceptions (botocore, SQLAlchemy, aiokafka) are translated into these at the
adapter boundary with ``raise ... from exc`` so callers never import a vendor to catch.
Each error has a stable ``code`` used by the HTTP API and the dead-letter topic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


class CallvaultError(Exception):
    """Base class: a message a person can act on, and a stable machine code."""

    code = "callvault_error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message} ({hint})")


class ConfigurationError(CallvaultError):
    """A setting is missing, malformed, or refused (for example a non-EU region)."""

    code = "configuration_error"

    def __init__(self, setting: str, message: str, *, hint: str | None = None) -> None:
        self.setting = setting
        super().__init__(f"{setting}: {message}", hint=hint)


@dataclass(frozen=True)
class FieldError:
    """One problem in an input: where (``loc``, as pydantic reports it) and what kind."""

    loc: tuple[str | int, ...]
    type: str
    msg: str = ""

    @property
    def path(self) -> str:
        return ".".join(str(part) for part in self.loc) or "<message>"

    def __str__(self) -> str:
        return f"{self.path}: {self.msg or self.type}"


class InvalidInput(CallvaultError):
    """A value from outside fails validation; ``errors`` lists every field problem found."""

    code = "invalid_input"

    def __init__(self, message: str, *, errors: Sequence[FieldError] = (), hint: str | None = None) -> None:
        self.errors = list(errors)
        super().__init__(message, hint=hint)

    @classmethod
    def from_errors(cls, errors: Sequence[FieldError], *, limit: int = 5):
        """A concise summary of the first ``limit`` errors (a fuzzed message can have hundreds)."""
        shown = "; ".join(str(e) for e in errors[:limit])
        more = f" (+{len(errors) - limit} more)" if len(errors) > limit else ""
        noun = "error" if len(errors) == 1 else "errors"
        return cls(f"{len(errors)} validation {noun}: {shown}{more}", errors=errors)


class MalformedInput(InvalidInput):
    """A value a person typed cannot be read as what was asked: a time without its offset, an id
    of neither accepted form, a number out of range. The message names the value and the
    accepted forms; the CLI answers it as a usage error (exit code 2), the API as 422."""

    code = "malformed_input"


class NotFound(CallvaultError):
    """What was asked for does not exist (or no longer). The packages' own not-found errors
    subclass it, keeping their codes, so an entry point maps one class (the API: to 404)."""

    code = "not_found"


class InvalidNumber(InvalidInput):
    """A phone number that is not one. The message names the reason, never the number."""

    code = "invalid_number"
