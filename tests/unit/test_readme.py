"""The README stays true: every setting is documented, and the two set-up commands exist."""

from pathlib import Path

from callvault.settings_doc import env_names

README = (Path(__file__).parents[2] / "README.md").read_text()


def test_every_setting_is_in_the_readme_table():
    missing = [name for name in env_names() if f"`{name}`" not in README]
    assert missing == []


def test_the_two_setup_commands_exist_and_ci_calls_the_test_command():
    root = Path(__file__).parents[2]
    for command in ("scripts/demo", "scripts/test"):
        assert command in README
        assert (root / command).stat().st_mode & 0o111
    assert "exec scripts/test" in (root / ".ci/run").read_text()
