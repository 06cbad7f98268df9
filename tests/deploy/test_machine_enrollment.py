"""One device per PC: every user's agent uses the PC's machine-wide enrollment (written once by the installer),
unless that user enrolled on their own; `mamori agent enroll` never writes over the machine-wide one."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import ENV_MACHINE_STATE, machine_state_dir
from agent.report.enrollment import Enrollment, EnrollmentWatch, load_enrollment, save_enrollment


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "machine"
    folder.mkdir()
    monkeypatch.setenv(ENV_MACHINE_STATE, str(folder))
    return folder


def test_machine_state_dir_defaults_to_var_lib_on_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_MACHINE_STATE, raising=False)
    from agent.platform import OS_NAME

    if OS_NAME != "linux":
        pytest.skip("the Linux default")
    assert machine_state_dir() == Path("/var/lib/mamori")


def test_users_agent_reads_the_machine_enrollment(machine: Path, tmp_path: Path) -> None:
    pc = Enrollment("https://m.example", "dev-1", "tok-1", "sales")
    save_enrollment(machine, pc)
    user_state = tmp_path / "user"
    user_state.mkdir()
    assert load_enrollment(user_state) == pc
    enrollment, changed = EnrollmentWatch(user_state).current()
    assert enrollment == pc and changed


def test_a_users_own_enrollment_wins_and_never_overwrites_the_machine_one(
    machine: Path, tmp_path: Path
) -> None:
    pc = Enrollment("https://m.example", "dev-1", "tok-1")
    save_enrollment(machine, pc)
    user_state = tmp_path / "user"
    user_state.mkdir()
    own = Enrollment("https://m.example", "dev-2", "tok-2")
    written = save_enrollment(user_state, own)
    assert written == user_state / "enrollment.json"
    assert load_enrollment(user_state) == own
    assert load_enrollment(machine) == pc


def test_not_enrolled_anywhere(machine: Path, tmp_path: Path) -> None:
    assert load_enrollment(tmp_path) is None
