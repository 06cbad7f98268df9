"""`mamori server ...` says what is wrong in one line with the fix, and where it serves (issue 12, item 6)."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from agent.cli import main
from server.settings import Settings, load_settings
from tests.harness.live_server import free_port

ROOT = Path(__file__).resolve().parents[2]


def one_line(text: str) -> str:
    assert text.count("\n") == 1, text
    assert "Traceback" not in text and "internal error" not in text
    return text


def test_an_unknown_database_url_is_one_line_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    """Before: "internal error: NoSuchModuleError", exit 70."""
    for command in ("run", "migrate"):
        assert main(["server", command, "--db", "bogus://"]) == 2
        err = one_line(capsys.readouterr().err)
        assert "no database driver for 'bogus'" in err and "postgresql+psycopg://" in err


def test_an_unreachable_postgresql_is_one_line_with_the_fix(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"postgresql+psycopg://mamori:secret@127.0.0.1:{free_port()}/mamori"
    assert main(["server", "migrate", "--db", url]) == 2
    err = one_line(capsys.readouterr().err)
    assert "cannot connect to PostgreSQL at 127.0.0.1:" in err and "start PostgreSQL" in err
    assert "secret" not in err  # the password is never printed
    assert main(["server", "admin-token", "create", "--db", url]) == 2
    assert "start PostgreSQL" in one_line(capsys.readouterr().err)


def test_migrate_says_where_the_sqlite_file_is(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "data" / "mamori.db"
    db.parent.mkdir()
    assert main(["server", "migrate", "--db", f"sqlite:///{db}"]) == 0
    assert f"SQLite file: {db}" in capsys.readouterr().out


def test_run_prints_where_it_listens_and_warns_on_plain_http(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'mamori.db'}"
    assert main(["server", "migrate", "--db", db]) == 0
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "server", "run", "--db", db, "--listen", f"127.0.0.1:{port}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        out = proc.stdout.readline() + proc.stdout.readline()
        warning = proc.stderr.readline()
    finally:
        proc.terminate()
        proc.wait(10)
    assert f"listening on http://127.0.0.1:{port}" in out
    assert f"SQLite file {tmp_path / 'mamori.db'}" in out
    assert (
        warning.startswith("warning: plain HTTP") and "tls_cert" in warning and "--insecure-http" in warning
    )


def test_the_sample_server_toml_documents_every_setting_and_loads(tmp_path: Path) -> None:
    sample = (ROOT / "server" / "server.sample.toml").read_text(encoding="utf-8")
    as_shipped = load_settings(ROOT / "server" / "server.sample.toml")  # all commented out: the defaults
    assert as_shipped.listen == Settings().listen and as_shipped.trusted_keys == ()
    # Uncomment the first example of each key: the file must then load and set every field.
    seen: set[str] = set()
    lines = []
    for line in sample.splitlines():
        match = re.match(r"^# ([a-z_]+) = (.*)$", line)
        if match and match.group(1) not in seen:
            seen.add(match.group(1))
            lines.append(f"{match.group(1)} = {match.group(2)}")
    names = {f.name for f in fields(Settings)} - {"db_url"} | {"db"}
    assert seen == names, f"undocumented: {names - seen}; unknown: {seen - names}"
    config = tmp_path / "server.toml"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    settings = load_settings(config)
    assert settings.listen == "127.0.0.1:8443" and settings.db_url.startswith("sqlite:")
    assert settings.tls_cert == Path("/etc/mamori/server.pem")
    defaults = Settings()
    for name in names - {"db", "trusted_keys", "tls_cert", "tls_key"}:
        assert getattr(settings, name) == getattr(defaults, name), f"{name}: the sample is not the default"


def test_policy_validate_warns_on_an_expired_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: an already expired policy was called "valid"."""
    from datetime import UTC, datetime

    from tests.harness.policies import write_policy

    expired = write_policy(tmp_path / "old.toml", extra={"expires": datetime(2020, 1, 1, tzinfo=UTC)})
    fresh = write_policy(tmp_path / "new.toml")
    assert main(["policy", "validate", str(expired), str(fresh)]) == 0  # still well-formed
    captured = capsys.readouterr()
    assert f"{expired}: valid" not in captured.out
    assert "expired" in captured.err and "2020-01-01" in captured.err and "later expires" in captured.err
    assert f"{fresh}: valid" in captured.out
