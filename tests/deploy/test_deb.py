"""`mamori package deb` for real: built once for the module, checked by lintian, systemd-analyze and
desktop-file-validate, installed on this machine with dpkg, enrolled against a real server, upgraded with an
edited agent.toml, purged. The install test needs root (CI runs as root) and purges even when it fails."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.cli import main
from server.settings import Settings
from tests.harness.live_server import ThreadServer, enroll_secret, migrated
from tests.harness.policies import PolicyKeys, policy_keys, policy_toml

pytestmark = [pytest.mark.apps, pytest.mark.slow]

PACKAGE = "mamori-agent"
TOOLS = ("dpkg-deb", "lintian", "systemd-analyze", "desktop-file-validate")
# Everything the package, its scripts or its enrollment unit write outside dpkg's own database.
FOOTPRINT = (
    "/opt/mamori",
    "/etc/mamori",
    "/var/lib/mamori",
    "/usr/libexec/mamori",
    "/usr/share/mamori",
    "/usr/bin/mamori",
    "/usr/share/doc/mamori-agent",
    "/usr/share/man/man1/mamori.1.gz",
    "/usr/share/lintian/overrides/mamori-agent",
    "/usr/lib/systemd/user/mamori-agent.service",
    "/usr/lib/systemd/system/mamori-enroll.service",
    "/etc/xdg/autostart/mamori-agent.desktop",
    "/etc/systemd/user/graphical-session.target.wants/mamori-agent.service",
    "/etc/systemd/system/multi-user.target.wants/mamori-enroll.service",
    "/etc/default/mamori",
)


def _missing_tools() -> list[str]:
    return [t for t in TOOLS if shutil.which(t) is None]


@dataclass(frozen=True)
class Built:
    deb: Path
    server: ThreadServer
    storage: object
    public_key: Path
    secret: str
    keys: PolicyKeys


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    if missing := _missing_tools():
        pytest.skip(
            f"{', '.join(missing)} not installed (.ci/run installs them: dpkg-dev lintian systemd ...)"
        )
    if not Path("/usr/bin/python3").exists():
        pytest.skip("no /usr/bin/python3 to build the agent's environment with")
    work = tmp_path_factory.mktemp("deb")
    storage = migrated(f"sqlite:///{work / 'server.db'}")
    keys = policy_keys(work / "keys")
    bundle = work / "acme.dsse.json"
    bundle.write_bytes(keys.sign(policy_toml(policy_id="acme", version=3)))
    secret = enroll_secret(storage, uses=5, group="sales")
    with ThreadServer(Settings(db_url=str(storage.engine.url)), storage) as server:
        argv = [
            "package", "deb", "--server", server.url, "--enroll-secret", secret, "--group", "sales",
            "--trusted-key", str(keys.public_path), "--policy", str(bundle), "-o", str(work / "out"),
            "--compression", "gzip", "--insecure-http",  # the test server is plain http on loopback
        ]  # fmt: skip
        assert main(argv) == 0
        (deb,) = (work / "out").glob("mamori-agent_*_*.deb")
        yield Built(deb, server, storage, keys.public_path, secret, keys)


def run(
    *argv: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result


def test_lintian_is_clean_with_every_override_used(built: Built) -> None:
    result = run(
        "lintian", "--info", "--show-overrides", "--tag-display-limit", "0", str(built.deb), check=False
    )
    lines = [line for line in result.stdout.splitlines() if line[:2] in ("E:", "W:", "I:", "X:")]
    problems = [line for line in lines if line.startswith(("E:", "W:"))]
    assert problems == [], "\n".join(problems)
    # overridden hints are shown with O:; an override that matches nothing is reported as unused or mismatched
    assert "unused-override" not in result.stdout and "mismatched-override" not in result.stdout, (
        result.stdout
    )
    overridden = [line for line in result.stdout.splitlines() if line.startswith("O:")]
    assert any("dir-or-file-in-opt" in line for line in overridden)


def test_control_conffiles_and_secret(built: Built, tmp_path: Path) -> None:
    fields = run("dpkg-deb", "--field", str(built.deb)).stdout
    assert "Package: mamori-agent" in fields
    depends = fields.split("Depends:", 1)[1].splitlines()[0]
    system = run("/usr/bin/python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])").stdout.strip()
    assert f"python{system}" in depends, depends  # the interpreter the venv links to, by minor version
    assert "python3-tk" in depends and "libc6 (>= 2." in depends
    run("dpkg-deb", "-e", str(built.deb), str(tmp_path / "DEBIAN"))
    listed = (tmp_path / "DEBIAN" / "conffiles").read_text().split()
    assert "/etc/mamori/agent.toml" in listed
    assert "/etc/mamori/policy.dsse.json" in listed
    assert any(p.startswith("/etc/mamori/keys/") for p in listed)
    listing = run("dpkg-deb", "--contents", str(built.deb)).stdout
    secret_line = next(line for line in listing.splitlines() if "enrollment.defaults" in line)
    assert secret_line.startswith("-rw------- root/root")
    # nothing in the package points back at the build machine
    run("dpkg-deb", "-x", str(built.deb), str(tmp_path / "root"))
    cfg = (tmp_path / "root/opt/mamori/pyvenv.cfg").read_text()
    assert "/tmp" not in cfg and "pyenv" not in cfg
    assert (tmp_path / "root/opt/mamori/bin/mamori").read_text().startswith("#!/opt/mamori/bin/python3\n")
    assert os.readlink(tmp_path / "root/opt/mamori/bin/python3").startswith("/usr/bin/python3.")
    assert not list((tmp_path / "root/opt/mamori").rglob("pip")), (
        "pip must not ship: nothing is fetched on PCs"
    )


def test_units_and_autostart_entry_validate(built: Built, tmp_path: Path) -> None:
    run("dpkg-deb", "-x", str(built.deb), str(tmp_path))
    run("desktop-file-validate", str(tmp_path / "etc/xdg/autostart/mamori-agent.desktop"))
    user_unit = tmp_path / "usr/lib/systemd/user/mamori-agent.service"
    text = user_unit.read_text()
    assert "Restart=always" in text and "ExecStart=/opt/mamori/bin/mamori agent run" in text
    assert "WantedBy=graphical-session.target" in text
    # (systemd-analyze verify needs ExecStart and the man page in place: it runs after dpkg -i below)


def _verify_installed_units(tmp_path: Path) -> None:
    runtime = tmp_path / "xdg-runtime"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    for scope, unit in (
        ("--user", "/usr/lib/systemd/user/mamori-agent.service"),
        ("--system", "/usr/lib/systemd/system/mamori-enroll.service"),
    ):
        result = run("systemd-analyze", scope, "verify", unit, check=False, env=env)
        assert result.returncode == 0 and "mamori" not in result.stderr, result.stderr


def _installed_version() -> str | None:
    result = run("dpkg-query", "-W", "-f=${Status} ${Version}", PACKAGE, check=False)
    if result.returncode != 0 or "install ok installed" not in result.stdout:
        return None
    return result.stdout.split()[-1]


def _repack(deb: Path, out: Path, version: str, edit_agent_toml: str | None = None) -> Path:
    """The same package as a later revision (and, optionally, a changed packaged agent.toml)."""
    tree = out / f"tree-{version}"
    run("dpkg-deb", "-R", str(deb), str(tree))
    control = tree / "DEBIAN/control"
    control.write_text(
        "\n".join(
            f"Version: {version}" if line.startswith("Version:") else line
            for line in control.read_text().splitlines()
        )
        + "\n"
    )
    if edit_agent_toml is not None:
        toml = tree / "etc/mamori/agent.toml"
        toml.write_text(toml.read_text() + edit_agent_toml)
        sums = tree / "DEBIAN/md5sums"
        sums.write_text(
            "\n".join(line for line in sums.read_text().splitlines() if "etc/mamori/agent.toml" not in line)
            + "\n"
        )
    target = out / f"mamori-agent_{version}.deb"
    run("dpkg-deb", "--root-owner-group", "-Zgzip", "-b", str(tree), str(target))
    return target


def _devices(storage: object) -> int:
    import sqlalchemy as sa

    with storage.engine.connect() as conn:  # type: ignore[attr-defined]
        return int(conn.execute(sa.text("SELECT count(*) FROM devices")).scalar_one())


NOBODY = 65534


def _as_worker(*argv: str, home: Path) -> subprocess.CompletedProcess[str]:
    """Run as an unprivileged user (nobody), the way a worker without admin rights would."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}
    cmd = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)


def _worker_cannot_roll_back_or_rewrite(built: Built, keys: list[str]) -> None:
    """What a worker without admin rights tries: rewrite the configuration, the drop or the PC's enrollment,
    or plant an older (validly signed) policy in their own state directory."""
    home = Path(tempfile.mkdtemp(prefix="mamori-worker-"))
    try:
        os.chown(home, NOBODY, NOBODY)
        before = {p: Path(p).read_bytes() for p in ("/etc/mamori/agent.toml", "/etc/mamori/policy.dsse.json")}
        for target in (*before, "/var/lib/mamori/enrollment.json", "/var/lib/mamori/floor.json"):
            attempt = _as_worker("sh", "-c", f"echo 'version = 1' >> {target}", home=home)
            assert attempt.returncode != 0, f"a worker could write {target}"
        assert {p: Path(p).read_bytes() for p in before} == before
        # an older policy, signed by IT's own key, planted in the worker's store
        old = home / "old.dsse.json"
        old.write_bytes(built.keys.sign(policy_toml(policy_id="acme", version=2)))
        state = home / "state"
        config = home / "agent.toml"
        config.write_text(f'state_dir = "{state}"\n' + Path("/etc/mamori/agent.toml").read_text())
        os.chown(old, NOBODY, NOBODY)
        os.chown(config, NOBODY, NOBODY)
        mamori = "/opt/mamori/bin/mamori"
        planted = _as_worker(
            mamori, "policy", "apply", str(old), "--pub", keys[0], "--state-dir", str(state), home=home
        )
        assert planted.returncode == 0, planted.stderr  # the store is the worker's: they can write it ...
        doctor = _as_worker(mamori, "agent", "doctor", "--json", "--config", str(config), home=home)
        rows = {row["id"].split(":")[0]: row for row in json.loads(doctor.stdout)["checks"]}
        # ... but the root-owned drop is the floor: the policy in force is still version 3
        assert rows["policy"]["status"] == "ok" and "acme v3" in rows["policy"]["detail"], rows["policy"]
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="dpkg -i needs root (CI runs .ci/run as root)")
def test_install_enroll_upgrade_keeps_config_purge_leaves_nothing(built: Built, tmp_path: Path) -> None:
    if _installed_version() is not None:
        pytest.skip(f"{PACKAGE} is already installed on this machine; not touching it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        run("dpkg", "-i", str(built.deb), env=env)
        assert _installed_version() == "0.1.0-1"
        mamori = "/opt/mamori/bin/mamori"
        assert run(mamori, "--version").stdout.startswith("mamori ")
        keys = sorted(str(p) for p in Path("/etc/mamori/keys").glob("*.pub"))
        verified = run(
            mamori,
            "policy",
            "verify",
            "/etc/mamori/policy.dsse.json",
            *[a for k in keys for a in ("--pub", k)],
        )
        assert "id acme version 3" in verified.stdout
        # enabled for every user and once per machine, without a running systemd (deb-systemd-helper)
        assert Path("/etc/systemd/user/graphical-session.target.wants/mamori-agent.service").is_symlink()
        assert Path("/etc/systemd/system/multi-user.target.wants/mamori-enroll.service").is_symlink()
        assert stat.S_IMODE(Path("/usr/share/mamori/enrollment.defaults").stat().st_mode) == 0o600
        _verify_installed_units(tmp_path)

        # machine-wide enrollment, as mamori-enroll.service runs it: one device, however often it runs
        out = run("/usr/libexec/mamori/enroll").stdout
        assert '"group": "sales"' in out
        doc = json.loads(Path("/var/lib/mamori/enrollment.json").read_text())
        assert doc["server"] == built.server.url
        assert (
            stat.S_IMODE(Path("/var/lib/mamori/enrollment.json").stat().st_mode) == 0o644
        )  # every user's agent
        assert (
            stat.S_IMODE(Path("/var/lib/mamori").stat().st_mode) == 0o755
            and Path("/var/lib/mamori").stat().st_uid == 0
        )
        run("/usr/libexec/mamori/enroll")
        assert _devices(built.storage) == 1

        # the installed agent evaluates the baked policy
        state = tmp_path / "state"
        run(
            mamori,
            "policy",
            "apply",
            "/etc/mamori/policy.dsse.json",
            "--pub",
            keys[0],
            "--state-dir",
            str(state),
        )
        config = tmp_path / "agent.toml"
        config.write_text(f'state_dir = "{state}"\n' + Path("/etc/mamori/agent.toml").read_text())
        check = run(mamori, "agent", "check", "--json", "--config", str(config))
        assert json.loads(check.stdout)["compliant"] is True
        doctor = run(mamori, "agent", "doctor", "--json", "--config", str(config), check=False)
        rows = {row["id"].split(":")[0]: row for row in json.loads(doctor.stdout)["checks"]}
        for install_row in ("config", "trusted_keys", "policy", "enrollment", "state_dir"):
            assert rows[install_row]["status"] == "ok", rows[install_row]
        # the worker's agent uses the PC's one enrollment, with the baked server
        assert (
            doc["device_id"] in rows["enrollment"]["detail"]
            and built.server.url in rows["enrollment"]["detail"]
        )

        _worker_cannot_roll_back_or_rewrite(built, keys)

        # IT edits agent.toml; a new revision with the same packaged file keeps the edit silently
        edited = Path("/etc/mamori/agent.toml").read_text() + 'language = "ja"\n'
        Path("/etc/mamori/agent.toml").write_text(edited)
        run("dpkg", "-i", str(_repack(built.deb, tmp_path, "0.1.0-2")), env=env)
        assert _installed_version() == "0.1.0-2"
        assert Path("/etc/mamori/agent.toml").read_text() == edited
        # ... and when the packaged file changed too, --force-confold keeps IT's and sets the new one beside it
        changed = _repack(built.deb, tmp_path, "0.1.0-3", edit_agent_toml="# new in 0.1.0-3\n")
        run("dpkg", "-i", "--force-confold", str(changed), env=env)
        assert Path("/etc/mamori/agent.toml").read_text() == edited
        assert "# new in 0.1.0-3" in Path("/etc/mamori/agent.toml.dpkg-dist").read_text()
        # the enrollment survived both upgrades: still the same single device
        assert (
            json.loads(Path("/var/lib/mamori/enrollment.json").read_text())["device_id"] == doc["device_id"]
        )
        run("/usr/libexec/mamori/enroll")
        assert _devices(built.storage) == 1

        # remove keeps configuration and the enrollment; purge removes everything
        run("dpkg", "--remove", PACKAGE, env=env)
        assert Path("/etc/mamori/agent.toml").read_text() == edited
        assert Path("/var/lib/mamori/enrollment.json").exists()
        assert not Path("/opt/mamori/bin/mamori").exists()
        run("dpkg", "--purge", PACKAGE, env=env)
        left = [p for p in FOOTPRINT if os.path.lexists(p)]
        assert left == []
        state_files = [
            str(p)
            for base in (
                "/var/lib/systemd/deb-systemd-helper-enabled",
                "/var/lib/systemd/deb-systemd-user-helper-enabled",
            )
            for p in Path(base).rglob("*mamori*")
        ]
        assert state_files == []
    finally:
        if _installed_version() is not None or run("dpkg-query", "-W", PACKAGE, check=False).returncode == 0:
            run("dpkg", "--purge", PACKAGE, check=False, env=env)
