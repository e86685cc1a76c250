"""Errors of the lifecycle package.

    CallvaultError
    └── LifecycleError
        ├── RetentionOutOfBounds   an override outside the legal minimum/maximum of its tier
        ├── UnknownTier            not one of production, monitoring, training, complaint-extract
        ├── CopyNotAllowed         e.g. a training copy without a report, an extract without a reason
        └── NotFound               the recording, copy or tenant does not exist (also a core NotFound)
"""

from __future__ import annotations

from core.errors import CallvaultError
from core.errors import NotFound as _NotFound


class LifecycleError(CallvaultError):
    code = "lifecycle_error"


class RetentionOutOfBounds(LifecycleError):
    code = "retention_out_of_bounds"


class UnknownTier(LifecycleError):
    code = "unknown_tier"


class CopyNotAllowed(LifecycleError):
    code = "copy_not_allowed"


class NotFound(LifecycleError, _NotFound):
    code = "not_found"
