"""Bearer tokens: HS256 JWTs signed with the configured secret, or an OIDC issuer's JWKS.

A valid token only says who is calling. Whether they may do anything is decided afresh on
every request from the catalog (``identities.load_user``): revocation and the contract end
date apply at once, even to tokens that have not expired.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import jwt

from callvault.errors import ConfigurationError

from .exceptions import Unauthenticated
from .settings import AccessSettings


def _secret(settings: AccessSettings) -> str:
    if settings.jwt_secret is None:
        raise ConfigurationError("CALLVAULT_ACCESS_JWT_SECRET", "is not set",
                                 hint="`callvault stack up` generates one locally; set a long random value elsewhere")
    secret = settings.jwt_secret.get_secret_value()
    if len(secret) < 32:
        raise ConfigurationError("CALLVAULT_ACCESS_JWT_SECRET", "is shorter than 32 characters")
    return secret


def issue_token(user_id: str, settings: AccessSettings, *, now: datetime | None = None,
                ttl: timedelta | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    ttl = ttl or timedelta(minutes=settings.token_ttl_minutes)
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
