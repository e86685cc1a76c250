"""The root of every error callvault raises on purpose.

    CallvaultError
    ├── ConfigurationError            a setting is missing, malformed or refused
    ├── stack errors (deploy.local.stack)
    │   ├── ServerStartError          a local server did not come up (names it, shows its log)
    │   └── PortInUseError            a port the stack needs is taken by something else
    ├── storage errors (storage.exceptions)
    ├── ingest errors (ingest.exceptions)
    ├── lifecycle errors (lifecycle.exceptions)
    └── access errors (access.exceptions)

Vendor exceptions (botocore, SQLAlchemy, aiokafka) are translated into these at the
adapter boundary with ``raise ... from exc`` so callers never import a vendor to catch.
Each error has a stable ``code`` used by the HTTP API and the dead-letter topic.
"""

from __future__ import annotations


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
