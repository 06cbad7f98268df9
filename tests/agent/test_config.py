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


def test_a_windows_path_in_double_quotes_gets_the_single_quote_fix(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text('state_dir = "C:\\Users\\taro\\mamori"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    message = str(info.value)
    assert "TOML syntax error" in message and "single quotes" in message
    assert "state_dir = 'C:\\Users\\taro\\mamori'" in message and "\n" not in message
    cfg.write_text('trusted_keys = ["\\\\fileserver\\keys\\p.pub"]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"trusted_keys = \['\\\\fileserver"):
        load_config(cfg)


@pytest.mark.parametrize(
    "value", ["C:\\Users\\太郎\\AppData\\Local\\mamori", "/home/taro/state", "C:\\it's\\here", 'a"b']
)
def test_toml_string_round_trips_paths(tmp_path: Path, value: str) -> None:
    import tomllib

    from agent.config import toml_string

    assert tomllib.loads(f"state_dir = {toml_string(value)}\n")["state_dir"] == value
    if "'" not in value:
        assert toml_string(value).startswith("'")  # a literal string: backslashes as they are


def test_the_demo_writes_an_agent_toml_that_reads_back_windows_paths(tmp_path: Path) -> None:
    import tomllib

    from agent.demo import agent_toml

    state, public = Path("C:\\Users\\taro\\state"), Path("C:\\Users\\taro\\keys\\policy-signing.pub")
    doc = tomllib.loads(agent_toml(state, public, "http://127.0.0.1:8080", tray=True))
    assert doc == {
        "state_dir": str(state),
        "trusted_keys": [str(public)],
        "server": "http://127.0.0.1:8080",
        "tray": True,
    }
