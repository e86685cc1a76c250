"""Every setting of every package, for the README table (``python -m callvault.settings_doc``)."""

from __future__ import annotations

from pydantic_settings import BaseSettings


def settings_classes() -> list[type[BaseSettings]]:
    from access.settings import AccessSettings
    from deploy.local.settings import StackSettings
    from ingest.settings import IngestSettings, KafkaSettings
    from lifecycle.settings import LifecycleSettings
    from storage.settings import CatalogSettings, StorageSettings

    return [StackSettings, KafkaSettings, IngestSettings, StorageSettings, CatalogSettings, LifecycleSettings,
            AccessSettings]


def env_names() -> list[str]:
    return [f"{cls.model_config['env_prefix']}{name}".upper()
            for cls in settings_classes() for name in cls.model_fields]


def markdown_table() -> str:
    lines = ["| environment variable | TOML | default | meaning |", "| --- | --- | --- | --- |"]
    for cls in settings_classes():
        for name, field in cls.model_fields.items():
            env = f"{cls.model_config['env_prefix']}{name}".upper()
            if field.default_factory is not None:
                default = "(computed)"
            elif field.default is None:
                default = "—"
            else:
                default = f"`{field.default}`"
            lines.append(f"| `{env}` | `[{cls.toml_section}] {name}` | {default} | {field.description or ''} |")
    return "\n".join(lines)


def update_readme(path: str = "README.md") -> None:
    """Replace the settings table in the README with the current one."""
    from pathlib import Path

    readme = Path(path)
    text = readme.read_text()
    start = text.index("| environment variable |")
    end = text.index("\n\n", start)
    readme.write_text(text[:start] + markdown_table() + text[end:])


if __name__ == "__main__":
    import sys

    if "--write-readme" in sys.argv:
        update_readme()
    else:
        print(markdown_table())
