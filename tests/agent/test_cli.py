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
