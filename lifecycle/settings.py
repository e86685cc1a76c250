"""Lifecycle settings (``CALLVAULT_LIFECYCLE_*``): legal bounds of retention, sweep batches, and the
folder where reports and exports are written when no path is given."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from core.config import SectionSettings, callvault_home

from .tiers import DEFAULT_MAX_MONTHS, DEFAULT_MIN_MONTHS


class LifecycleSettings(SectionSettings):
    model_config = SettingsConfigDict(env_prefix="CALLVAULT_LIFECYCLE_")
    toml_section = "lifecycle"

    min_months: dict[str, int] = Field(default_factory=lambda: {k.value: v for k, v in DEFAULT_MIN_MONTHS.items()},
                                       description="Legal minimum retention per tier (JSON object)")
    max_months: dict[str, int] = Field(default_factory=lambda: {k.value: v for k, v in DEFAULT_MAX_MONTHS.items()},
                                       description="Legal maximum retention per tier (JSON object)")
    sweep_batch_size: int = Field(500, description="Copies deleted per sweep batch")
    output_dir: Path = Field(default_factory=lambda: callvault_home() / "out", description=(
        "Where `lifecycle report` and `subjects export` write when given no path (created if missing; "
        "default: $CALLVAULT_HOME/out)"))


@lru_cache
def get_lifecycle_settings() -> LifecycleSettings:
    return LifecycleSettings()
