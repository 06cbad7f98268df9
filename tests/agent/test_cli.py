"""The `mamori` entry point: dispatch, exit codes, one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from agent.cli import main


def test_no_arguments_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: mamori" in capsys.readouterr().err


def test_version_flag() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "agent", "--version"], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0
    assert out.stdout.startswith("mamori ")


@pytest.mark.parametrize(
    ("argv", "loaded"),
    [
        (["--debug", "agent", "--help"], "agent.commands True server.cli False deploy.cli False"),
        (["server", "--help"], "agent.commands False server.cli True deploy.cli False"),
        (["--help"], "agent.commands True server.cli True deploy.cli True"),
    ],
)
def test_only_the_named_groups_commands_are_imported(argv: list[str], loaded: str) -> None:
    # `mamori agent run` stays running all session: the server's and the packager's modules stay out of it.
    script = (
        "import sys\n"
        "from agent.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(' '.join(f'{m} {m in sys.modules}' for m in ('agent.commands', 'server.cli', 'deploy.cli')),"
        " file=sys.stderr)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stderr.strip().splitlines()[-1] == loaded
    assert "usage: mamori" in out.stdout
