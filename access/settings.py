"""Access settings (``CALLVAULT_ACCESS_*``): tokens, break-glass, the API's address."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from core.config import SectionSettings

BREAK_GLASS_CEILING_MINUTES = 24 * 60  # a grant is an emergency measure: never more than a day


class AccessSettings(SectionSettings):
    model_config = SettingsConfigDict(env_prefix="CALLVAULT_ACCESS_")
    toml_section = "access"

    jwt_secret: SecretStr | None = Field(None, description=(
        "HS256 secret for bearer tokens and the root of the link keys: at least 32 bytes in every auth mode "
        "(local stack: generated)"))
    jwt_issuer: str = Field("callvault", description="Expected `iss` of tokens")
    jwt_audience: str = Field("callvault-api", description="Expected `aud` of tokens")
    oidc_jwks_url: str | None = Field(None, description="Accept RS256/ES256 tokens signed by this OIDC JWKS instead")
    token_ttl_minutes: int = Field(480, description="Lifetime of tokens issued by `callvault users token`")
    break_glass_max_minutes: int = Field(120, ge=1, le=BREAK_GLASS_CEILING_MINUTES, description=(
        "Longest break-glass grant IT may open (1..1440); the API's schema states it as the bound of `minutes`"))
    api_host: str = Field("127.0.0.1", description="Address `callvault api` listens on")
    api_port: int = Field(8080, description="Port `callvault api` listens on")
    stream_url_ttl_seconds: int = Field(300, description="Lifetime of a signed download/stream link")
    playback_threads: int = Field(8, ge=1, le=1000, description=(
        "Worker threads the audio requests of one API process use at once; past them a range waits its turn "
        "(the CPU-bound case: fewer threads contending for one process's interpreter). Raise it for an object "
        "store far away (each thread waits a GET)"))
    export_stream_mb_per_s: float | None = Field(
        None, gt=0, description="Pace of a data-subject export's ZIP download in MB/s (10^6 B), so a bulk "
                                "download on a fast link leaves the API's CPU to playback; none: unpaced")


@lru_cache
def get_access_settings() -> AccessSettings:
    return AccessSettings()
