"""The local stack's client settings: an audit anchor key is generated, and added to an older file."""

from __future__ import annotations

import base64
import tomllib

from deploy.local.settings import StackSettings
from deploy.local.stack import ensure_local_config


def _read(path):
    with path.open("rb") as fh:
        return tomllib.load(fh)


def test_a_fresh_local_config_has_an_anchor_key_apart_from_the_master_key(tmp_path, monkeypatch):
    monkeypatch.setenv("CALLVAULT_HOME", str(tmp_path))
    settings = StackSettings()
    ensure_local_config(settings)
    storage = _read(settings.home / "callvault.toml")["storage"]
    assert len(base64.b64decode(storage["audit_anchor_key"])) == 32
    assert storage["audit_anchor_key"] != storage["master_key"]


def test_an_older_local_config_gets_the_anchor_key_and_keeps_its_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("CALLVAULT_HOME", str(tmp_path))
    settings = StackSettings()
    ensure_local_config(settings)
    path = settings.home / "callvault.toml"
    before = _read(path)
    lines = [line for line in path.read_text().splitlines() if not line.startswith("audit_anchor_key")]
    path.write_text("\n".join(lines) + "\n")
    ensure_local_config(settings)
    after = _read(path)
    assert len(base64.b64decode(after["storage"]["audit_anchor_key"])) == 32
    assert after["storage"]["master_key"] == before["storage"]["master_key"]
    assert after["local"] == before["local"]
    ensure_local_config(settings)
    assert _read(path) == after  # never replaced once there
