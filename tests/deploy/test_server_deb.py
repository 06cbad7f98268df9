"""`mamori package server-deb` for real: built once for the module, checked by lintian and systemd-analyze,
installed on this machine with dpkg, run as its own user the way its unit runs it, upgraded with an edited
server.toml, purged. The install test needs root (CI runs as root) and purges even when it fails."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from agent.cli import main

pytestmark = [pytest.mark.apps, pytest.mark.slow]

PACKAGE = "mamori-server"
USER = "mamori-server"
TOOLS = ("dpkg-deb", "lintian", "systemd-analyze", "runuser")
FOOTPRINT = (
    "/opt/mamori-server",
    "/etc/mamori-server",
    "/var/lib/mamori-server",
    "/usr/sbin/mamori-server",
    "/usr/share/doc/mamori-server",
    "/usr/share/man/man8/mamori-server.8.gz",
    "/usr/share/lintian/overrides/mamori-server",
    "/usr/lib/systemd/system/mamori-server.service",
    "/etc/systemd/system/multi-user.target.wants/mamori-server.service",
)


def run(
    *argv: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, check=False, env=env, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if missing := [t for t in TOOLS if shutil.which(t) is None]:
        pytest.skip(f"{', '.join(missing)} not installed (.ci/run installs dpkg-dev lintian systemd)")
    if not Path("/usr/bin/python3").exists():
        pytest.skip("no /usr/bin/python3 to build the server's environment with")
    out = tmp_path_factory.mktemp("server-deb")
    assert main(["package", "server-deb", "-o", str(out), "--compression", "gzip"]) == 0
    (built,) = out.glob("mamori-server_*_*.deb")
    return built


def test_lintian_is_clean_with_every_override_used(deb: Path) -> None:
    result = run("lintian", "-I", "--show-overrides", "--tag-display-limit", "0", str(deb), check=False)
    problems = [line for line in result.stdout.splitlines() if line.startswith(("E:", "W:", "I:"))]
    assert problems == [], "\n".join(problems)
    overridden = {line.split()[2] for line in result.stdout.splitlines() if line.startswith("O:")}
    overrides = Path(__file__).parents[2] / "installer/linux/server/lintian-overrides"
    declared = {
        line.split()[1] for line in overrides.read_text().splitlines() if line.startswith(f"{PACKAGE}:")
    }
    assert declared - overridden == set(), f"overrides that match nothing: {declared - overridden}"


def test_control_unit_and_conffiles(deb: Path, tmp_path: Path) -> None:
    fields = run("dpkg-deb", "--field", str(deb)).stdout
    assert "Package: mamori-server" in fields and "adduser" in fields
    run("dpkg-deb", "-e", str(deb), str(tmp_path / "DEBIAN"))
    assert (tmp_path / "DEBIAN/conffiles").read_text().split() == ["/etc/mamori-server/server.toml"]
    run("dpkg-deb", "-x", str(deb), str(tmp_path / "root"))
    unit = (tmp_path / "root/usr/lib/systemd/system/mamori-server.service").read_text()
    for line in ("User=mamori-server", "ExecStartPre=/opt/mamori-server/bin/mamori server migrate",
                 "ExecStart=/opt/mamori-server/bin/mamori server run", "Restart=on-failure",
                 "ProtectSystem=strict", "NoNewPrivileges=yes", "StateDirectory=mamori-server"):  # fmt: skip
        assert line in unit.splitlines(), line
    toml = (tmp_path / "root/etc/mamori-server/server.toml").read_text()
    assert 'db = "sqlite:////var/lib/mamori-server/mamori.db"' in toml and 'listen = "127.0.0.1:8443"' in toml
    site = next((tmp_path / "root/opt/mamori-server/lib").glob("python3*/site-packages"))
    assert (site / "fastapi").is_dir() and (site / "uvicorn").is_dir() and (site / "psycopg").is_dir()
    assert not list(site.glob("reportlab/fonts/*.pfb")), "pruned: fonts lintian deems non-free"


def _installed() -> bool:
    result = run("dpkg-query", "-W", "-f=${Status}", PACKAGE, check=False)
    return result.returncode == 0 and "install ok installed" in result.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving() -> Iterator[str]:
    """The installed server run the way mamori-server.service runs it: as its user, with its configuration."""
    port = _free_port()
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "MAMORI_SERVER_CONFIG": "/etc/mamori-server/server.toml",
        "LANG": "C.UTF-8",
    }
    argv = ["runuser", "-u", USER, "--", "/opt/mamori-server/bin/mamori", "server", "run",
            "--listen", f"127.0.0.1:{port}"]  # fmt: skip
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.communicate()[0]
            try:
                if requests.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "the installed server did not become ready in 30 s"
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def _serve_and_use() -> str:
    """An admin, as root, makes a token with the wrapper (it runs as the service's user, on the service's
    database); the server run as that user accepts it; the compliance report renders with the pruned reportlab."""
    token = json.loads(run("/usr/sbin/mamori-server", "admin-token", "create", "--json").stdout)["token"]
    database = Path("/var/lib/mamori-server/mamori.db")
    assert database.stat().st_uid == pwd.getpwnam(USER).pw_uid
    with serving() as url:
        listed = requests.get(
            f"{url}/v1/admin/devices", headers={"Authorization": f"Bearer {token}"}, timeout=5
        )
        assert listed.status_code == 200 and listed.json()["devices"] == []
        secret = json.loads(
            run("/usr/sbin/mamori-server", "enroll-secret", "create", "--group", "default", "--json").stdout
        )["secret"]
        enrolled = requests.post(f"{url}/v1/enroll", json={"secret": secret, "hostname": "pc-1"}, timeout=5)
        assert enrolled.status_code == 200, enrolled.text
        listed = requests.get(
            f"{url}/v1/admin/devices", headers={"Authorization": f"Bearer {token}"}, timeout=5
        )
        assert [d["hostname"] for d in listed.json()["devices"]] == ["pc-1"]
    out = Path(tempfile.mkdtemp(prefix="mamori-server-report-"))
    try:
        os.chown(out, pwd.getpwnam(USER).pw_uid, -1)
        run("/usr/sbin/mamori-server", "report", "--group", "default", "--period", "2026-11",
            "-o", str(out / "report.pdf"))  # fmt: skip
        assert (out / "report.pdf").read_bytes().startswith(b"%PDF-")
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return token


def _repack(deb: Path, out: Path, version: str) -> Path:
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
    target = out / f"{PACKAGE}_{version}.deb"
    run("dpkg-deb", "--root-owner-group", "-Zgzip", "-b", str(tree), str(target))
    return target


@pytest.mark.skipif(os.geteuid() != 0, reason="dpkg -i needs root (CI runs .ci/run as root)")
def test_install_serve_upgrade_keeps_config_purge_leaves_nothing(deb: Path, tmp_path: Path) -> None:
    if _installed():
        pytest.skip(f"{PACKAGE} is already installed on this machine; not touching it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        run("dpkg", "-i", str(deb), env=env)
        user = pwd.getpwnam(USER)
        assert user.pw_shell in ("/usr/sbin/nologin", "/bin/false") and user.pw_uid < 1000
        state = Path("/var/lib/mamori-server")
        assert state.stat().st_uid == user.pw_uid and stat.S_IMODE(state.stat().st_mode) == 0o750
        assert (state / "mamori.db").exists(), "postinst migrates the default database"
        assert Path("/etc/systemd/system/multi-user.target.wants/mamori-server.service").is_symlink()
        verify = run(
            "systemd-analyze", "verify", "/usr/lib/systemd/system/mamori-server.service", check=False
        )
        assert verify.returncode == 0 and "mamori" not in verify.stderr, verify.stderr
        token = _serve_and_use()

        # IT edits server.toml; an upgrade keeps the edit and the data (the token still signs in)
        config = Path("/etc/mamori-server/server.toml")
        edited = config.read_text() + "default_group = 'sales'\n"
        config.write_text(edited)
        run("dpkg", "-i", str(_repack(deb, tmp_path, "0.1.0-2")), env=env)
        assert config.read_text() == edited
        with serving() as url:
            listed = requests.get(
                f"{url}/v1/admin/devices", headers={"Authorization": f"Bearer {token}"}, timeout=5
            )
            assert listed.status_code == 200

        # remove keeps configuration and data; purge removes everything, the service's user included
        run("dpkg", "--remove", PACKAGE, env=env)
        assert config.read_text() == edited and (state / "mamori.db").exists()
        assert not Path("/opt/mamori-server/bin/mamori").exists()
        run("dpkg", "--purge", PACKAGE, env=env)
        assert [p for p in FOOTPRINT if os.path.lexists(p)] == []
        assert run("getent", "passwd", USER, check=False).returncode != 0
        assert list(Path("/var/lib/systemd/deb-systemd-helper-enabled").rglob("*mamori-server*")) == []
    finally:
        if _installed() or run("dpkg-query", "-W", PACKAGE, check=False).returncode == 0:
            run("dpkg", "--purge", PACKAGE, check=False, env=env)
