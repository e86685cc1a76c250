"""Bearer tokens: HS256 JWTs signed with the configured secret, or an OIDC issuer's JWKS; and
the keys of signed links, derived from that secret.

The secret must be at least 32 bytes and not a ``change-me`` placeholder in every auth mode:
under OIDC it no longer signs tokens but still signs stream and export links, so a short
or published one would let links be forged. ``create_app`` checks it before serving.

Links are never signed with the secret itself: each kind has its own key, derived with
HKDF-SHA256 under a distinct ``info`` (``link_key``), so a stream link's signature is
worthless as an export link's, and neither is an HMAC a JWT-secret holder could compute
without the derivation.

A valid token only says who is calling. Whether they may do anything is decided afresh on
every request from the catalog (``identities.load_user``): revocation and the contract end
date apply at once, even to tokens that have not expired.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from enum import StrEnum

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from core.errors import ConfigurationError, MalformedInput

from .exceptions import Unauthenticated
from .settings import AccessSettings

MIN_SECRET_BYTES = 32
_HINT = "set at least 32 random bytes, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"


def require_secret(settings: AccessSettings) -> str:
    """The configured secret, or a ConfigurationError naming the setting (every auth mode)."""
    if settings.jwt_secret is None:
        raise ConfigurationError("CALLVAULT_ACCESS_JWT_SECRET", "is not set (it signs tokens and links)",
                                 hint="`callvault stack up` generates one locally; " + _HINT)
    secret = settings.jwt_secret.get_secret_value()
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ConfigurationError("CALLVAULT_ACCESS_JWT_SECRET",
                                 f"is shorter than {MIN_SECRET_BYTES} bytes (it signs tokens and links)", hint=_HINT)
    if secret.lower().startswith("change-me"):
        raise ConfigurationError("CALLVAULT_ACCESS_JWT_SECRET", "is still the example placeholder", hint=_HINT)
    return secret


_secret = require_secret


class LinkPurpose(StrEnum):
    """What a signed link opens; each has its own HKDF ``info``, hence its own key."""

    STREAM = "callvault/link/v1/stream"
    EXPORT = "callvault/link/v1/export"


def link_key(settings: AccessSettings, purpose: LinkPurpose) -> bytes:
    """The HMAC key of one kind of link: HKDF-SHA256 of the secret, info = the purpose."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=purpose.value.encode()).derive(require_secret(settings).encode())


MAX_TOKEN_MINUTES = 7 * 24 * 60  # a week: a longer-lived bearer token is a password nobody rotates


def issue_token(user_id: str, settings: AccessSettings, *, now: datetime | None = None,
                ttl: timedelta | None = None) -> str:
    """A bearer token for ``user_id``, valid ``ttl`` (default from settings): positive, at most a week."""
    now = now or datetime.now(timezone.utc)
    ttl = ttl or timedelta(minutes=settings.token_ttl_minutes)
    if not timedelta(0) < ttl <= timedelta(minutes=MAX_TOKEN_MINUTES):
        raise MalformedInput(f"a token lifetime of {ttl.total_seconds() / 60:g} minutes is refused: it must be "
                             f"positive and at most {MAX_TOKEN_MINUTES} minutes (a week)")
    claims = {"sub": user_id, "iss": settings.jwt_issuer, "aud": settings.jwt_audience,
              "iat": int(now.timestamp()), "exp": int((now + ttl).timestamp())}
    return jwt.encode(claims, _secret(settings), algorithm="HS256")


_jwks_clients: dict[str, jwt.PyJWKClient] = {}


def verify_token(token: str, settings: AccessSettings) -> str:
    """The user id (``sub``) of a valid token; Unauthenticated otherwise (never says why in detail)."""
    try:
        if settings.oidc_jwks_url:
            client = _jwks_clients.get(settings.oidc_jwks_url)
            if client is None:
                client = _jwks_clients[settings.oidc_jwks_url] = jwt.PyJWKClient(settings.oidc_jwks_url)
            key = client.get_signing_key_from_jwt(token).key
            claims = jwt.decode(token, key, algorithms=["RS256", "ES256"], audience=settings.jwt_audience,
                                issuer=settings.jwt_issuer, options={"require": ["exp", "sub"]})
        else:
            claims = jwt.decode(token, _secret(settings), algorithms=["HS256"], audience=settings.jwt_audience,
                                issuer=settings.jwt_issuer, options={"require": ["exp", "sub"]})
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("token expired", hint="ask for a new one") from None
    except (jwt.PyJWTError, ValueError):
        raise Unauthenticated("invalid token") from None
    return str(claims["sub"])
