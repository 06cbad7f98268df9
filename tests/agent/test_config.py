from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import ConfigError, load_config


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text(
        'state_dir = "state"\ntrusted_keys = ["k.pub"]\nlock_command = ["true"]\nlanguage = "ja"\n'
    )
    config = load_config(cfg)
    assert config.state_dir == tmp_path / "state"
    assert config.trusted_keys == (tmp_path / "k.pub",)
    assert config.lock_command == ("true",)
    assert config.language == "ja"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("tray = 1\n", "tray must be true or false"),
        ('bogus = "x"\n', "unknown key(s) bogus"),
        ('lock_command = "xlock"\n', "lock_command must be an array"),
        ('language = "fr"\n', 'language must be "ja" or "en"'),
        ("x = [\n", "TOML syntax error"),
    ],
)
def test_bad_config_names_the_problem(tmp_path: Path, text: str, needle: str) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=None) as info:
        load_config(cfg)
    assert needle in str(info.value)


def test_explicit_missing_config_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_an_empty_trusted_key_path_is_refused(tmp_path: Path) -> None:
    # Before the fix "" became the config directory itself and failed later, at the first policy, as a key file.
    cfg = tmp_path / "agent.toml"
    cfg.write_text('trusted_keys = [""]\n')
    with pytest.raises(ConfigError, match="trusted_keys must be an array of paths"):
        load_config(cfg)
