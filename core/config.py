"""Settings plumbing shared by every package.

Each package owns one ``BaseSettings`` subclass with its own environment prefix
(``CALLVAULT_STORAGE_``, ``CALLVAULT_KAFKA_`` ...). Values come, highest first, from
keyword arguments, the environment, then one section of a TOML file: the file named by
``CALLVAULT_CONFIG``, else ``$CALLVAULT_HOME/callvault.toml`` (written by ``callvault
stack up`` with the local stack's generated credentials, mode 0600, outside the repo).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, ClassVar

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource


def callvault_home() -> Path:
    """Where downloads, builds, server data and local secrets live (never the repo)."""
    return Path(os.environ.get("CALLVAULT_HOME", Path.home() / ".cache" / "callvault")).expanduser()


def config_file() -> Path:
    explicit = os.environ.get("CALLVAULT_CONFIG")
    return Path(explicit).expanduser() if explicit else callvault_home() / "callvault.toml"


def read_config_file(path: Path | None = None) -> dict[str, Any]:
    path = path or config_file()
    if not path.is_file():
        return {}
    with path.open("rb") as fh:
        return tomllib.load(fh)


class _TomlSection(PydanticBaseSettingsSource):
    """Reads ``[section]`` of the config file for one settings class."""

    def __init__(self, settings_cls: type[BaseSettings], section: str) -> None:
        super().__init__(settings_cls)
        self._values = read_config_file().get(section, {})

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._values.items() if k in self.settings_cls.model_fields}


class SectionSettings(BaseSettings):
    """Base for a package's settings: env prefix plus a TOML section of the same name."""

    toml_section: ClassVar[str] = ""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSection(settings_cls, cls.toml_section))
