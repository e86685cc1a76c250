"""Errors of the access package, each with the HTTP status the API maps it to.

    CallvaultError
    └── AccessError
        ├── Unauthenticated     401  no token, a bad or expired token, an unknown user
        ├── Forbidden           403  the policy said no (the decision is audited)
        ├── NotFound            404  no such recording or copy, or not visible to the user (a core NotFound)
        ├── InvalidRange        416  a byte range outside the audio
        ├── LengthRequired      411  a push without Content-Length (the audio's length seals it)
        ├── PayloadTooLarge     413  a push larger than the ingest limit
        └── BadRequest          400  a malformed request the schema could not catch
"""

from __future__ import annotations

from core.errors import CallvaultError
from core.errors import NotFound as _NotFound


class AccessError(CallvaultError):
    code = "access_error"
    status = 400


class Unauthenticated(AccessError):
    code = "unauthenticated"
    status = 401


class Forbidden(AccessError):
    code = "forbidden"
    status = 403


class NotFound(AccessError, _NotFound):
    code = "not_found"
    status = 404


class InvalidRange(AccessError):
    code = "range_not_satisfiable"
    status = 416


class BadRequest(AccessError):
    code = "bad_request"
    status = 400


class LengthRequired(AccessError):
    code = "length_required"
    status = 411


class PayloadTooLarge(AccessError):
    code = "payload_too_large"
    status = 413
