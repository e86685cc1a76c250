"""The secret behind tokens and links (issue 16): required, at least 32 bytes and not the
example placeholder in every auth mode, OIDC included; links get one HKDF key per purpose."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from access.api import create_app
from access.settings import AccessSettings
from access.tokens import LinkPurpose, link_key
from core.errors import ConfigurationError

GOOD = "k" * 32
OIDC = {"oidc_jwks_url": "https://idp.example.eu/.well-known/jwks.json"}


@pytest.mark.parametrize("mode", [{}, OIDC], ids=["hs256", "oidc"])
@pytest.mark.parametrize("secret, why", [
    (None, "is not set"),
    ("change-me-jwt-secret", "shorter than 32 bytes"),        # the old 20-character placeholder
    ("é" * 15, "shorter than 32 bytes"),                      # 30 bytes (15 characters)
    ("change-me-to-at-least-32-random-bytes", "placeholder"),  # the examples' placeholder now
])
def test_the_api_refuses_to_start_without_a_real_32_byte_secret(mode, secret, why):
    settings = AccessSettings(jwt_secret=SecretStr(secret) if secret else None, **mode)
    with pytest.raises(ConfigurationError, match=why) as refused:
        create_app(settings=settings)
    assert refused.value.setting == "CALLVAULT_ACCESS_JWT_SECRET"


@pytest.mark.parametrize("mode", [{}, OIDC], ids=["hs256", "oidc"])
def test_a_32_byte_secret_starts_the_api(mode):
    assert create_app(settings=AccessSettings(jwt_secret=SecretStr(GOOD), **mode)).openapi()["paths"]


def test_each_link_purpose_has_its_own_derived_key():
    settings = AccessSettings(jwt_secret=SecretStr(GOOD))
    stream, export = link_key(settings, LinkPurpose.STREAM), link_key(settings, LinkPurpose.EXPORT)
    assert len(stream) == len(export) == 32
    assert len({stream, export, GOOD.encode()}) == 3
    assert link_key(settings, LinkPurpose.STREAM) == stream  # deterministic: links survive a restart
    other = AccessSettings(jwt_secret=SecretStr("j" * 32))
    assert link_key(other, LinkPurpose.STREAM) != stream
