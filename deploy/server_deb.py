"""``mamori package server-deb``: a Debian package of the Mamori server, beside the agent's package.

Layout (docs/admin-guide.md, "The server package"):

- ``/opt/mamori-server``: the server's own Python environment (``mamori[server]``), built like the agent's
  (deploy/deb.py): nothing is fetched when the machine installs it.
- ``/etc/mamori-server/server.toml`` (a conffile, kept on upgrade) and the trusted policy keys beside it.
- ``mamori-server.service``, a sandboxed system unit running as the system user ``mamori-server`` (made by
  postinst), its data, the default SQLite database, in ``/var/lib/mamori-server``.
- ``/usr/sbin/mamori-server``: ``mamori server …`` with that configuration, as that user when run as root.

Maintainer scripts, unit, man page and lintian overrides are in installer/linux/server/.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from datetime import datetime
from email.utils import format_datetime
from pathlib import Path, PurePosixPath

from core import __version__
from deploy.bake import KeyFile, PackageError, toml_string
from deploy.deb import (
    DEFAULT_MAINTAINER,
    DEFAULT_PYTHON,
    Run,
    asset,
    build_runtime,
    debian_dir,
    glibc_needed,
    gzip_bytes,
    install_file,
    installed_size_kib,
    preflight,
    python_minor,
    run_tool,
)
from deploy.sources import installer_dir, project_source

PACKAGE = "mamori-server"
PREFIX = PurePosixPath("/opt/mamori-server")
CONFIG_DIR = PurePosixPath("/etc/mamori-server")
STATE_DIR = PurePosixPath("/var/lib/mamori-server")
DEFAULT_LISTEN = "127.0.0.1:8443"
# Files of the bundled wheels the server never uses, removed from the environment. reportlab ships Type 1 and
# TrueType fonts for its bitmap renderer and demos (the compliance report embeds IPAGothic from the system,
# server/report.py), among them Adobe fragments Debian deems non-free (lintian's license-problem-font-*).
PRUNE = ("reportlab/fonts/*.pfb", "reportlab/fonts/*.ttf", "reportlab/fonts/*.sfd")


def server_toml(*, listen: str, db: str | None, trusted_keys: Sequence[KeyFile]) -> str:
    """The packaged server.toml: the package's own values, then the commented sample of every other key."""
    sample = (installer_dir().parent / "server" / "server.sample.toml").read_text(encoding="utf-8")
    lines = [
        "# /etc/mamori-server/server.toml — settings of mamori-server.service (a conffile: kept on upgrade).",
        "# After a change: systemctl restart mamori-server. Every key is described below.",
        f"db = {toml_string(db or f'sqlite:///{STATE_DIR}/mamori.db')}",
        f"listen = {toml_string(listen)}",
    ]
    if trusted_keys:
        keys = ", ".join(toml_string(CONFIG_DIR / "keys" / k.name) for k in trusted_keys)
        lines.append(f"trusted_keys = [{keys}]")
    return "\n".join(lines) + "\n\n" + sample


def build_server_deb(
    out_dir: Path,
    *,
    now: datetime,
    listen: str = DEFAULT_LISTEN,
    db: str | None = None,
    trusted_keys: Sequence[KeyFile] = (),
    revision: str = "1",
    wheel: Path | None = None,
    python: str = DEFAULT_PYTHON,
    pip_options: Sequence[str] = (),
    maintainer: str = DEFAULT_MAINTAINER,
    compression: str = "xz",
    run: Run = run_tool,
) -> Path:
    """Build ``out_dir/mamori-server_<version>-<revision>_<arch>.deb`` and return its path."""
    arch = preflight(compression, python)
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise PackageError(f"--listen {listen!r}: give HOST:PORT, e.g. 0.0.0.0:8443")
    source = str(wheel if wheel is not None else project_source()) + "[server]"
    out_dir.mkdir(parents=True, exist_ok=True)
    version = f"{__version__}-{revision}"
    with tempfile.TemporaryDirectory(prefix="mamori-server-deb-") as tmp:
        root = Path(tmp) / "root"
        env = build_runtime(root, source, python=python, pip_options=pip_options, run=run, final=PREFIX)
        for site in env.glob("lib/python3*/site-packages"):
            for pattern in PRUNE:
                for path in site.glob(pattern):
                    path.unlink()
        _lay_out(root, listen=listen, db=db, trusted_keys=trusted_keys)
        _docs(root, version, maintainer, now)
        debian_dir(
            root, _control(root, version=version, arch=arch, maintainer=maintainer, python=python), "server"
        )
        target = out_dir / f"{PACKAGE}_{version}_{arch}.deb"
        run(["dpkg-deb", "--root-owner-group", f"-Z{compression}", "--build", str(root), str(target)])
    return target


def _lay_out(root: Path, *, listen: str, db: str | None, trusted_keys: Sequence[KeyFile]) -> None:
    etc = str(CONFIG_DIR)
    # 0640 root:mamori-server would be better for a database password; dpkg cannot name a group that postinst
    # has not made yet, so the file is 0644 and a password belongs in the environment ($MAMORI_DB_URL, a drop-in).
    install_file(root, f"{etc}/server.toml", server_toml(listen=listen, db=db, trusted_keys=trusted_keys))
    for key in trusted_keys:
        install_file(root, f"{etc}/keys/{key.name}", key.data)
    install_file(root, "/usr/lib/systemd/system/mamori-server.service", asset("server/mamori-server.service"))
    install_file(root, "/usr/sbin/mamori-server", asset("server/mamori-server"), 0o755)
    install_file(root, "/usr/share/man/man8/mamori-server.8.gz", gzip_bytes(asset("server/mamori-server.8")))
    install_file(root, f"/usr/share/lintian/overrides/{PACKAGE}", asset("server/lintian-overrides"))


def _docs(root: Path, version: str, maintainer: str, now: datetime) -> None:
    doc = f"/usr/share/doc/{PACKAGE}"
    install_file(root, f"{doc}/copyright", asset("server/copyright"))
    changelog = (
        f"{PACKAGE} ({version}) unstable; urgency=medium\n\n"
        f"  * Mamori server {__version__}, built by `mamori package server-deb`.\n\n"
        f" -- {maintainer}  {format_datetime(now)}\n"
    )
    install_file(root, f"{doc}/changelog.Debian.gz", gzip_bytes(changelog.encode("utf-8")))


def _control(root: Path, *, version: str, arch: str, maintainer: str, python: str) -> str:
    glibc = ".".join(map(str, glibc_needed(root / PREFIX.relative_to("/"))))
    depends = [
        f"python{python_minor(python)}",  # the venv's interpreter is the system one
        f"libc6 (>= {glibc})",
        "libstdc++6",
        "adduser",  # postinst makes the service's system user
        "init-system-helpers (>= 1.58)",
    ]
    return (
        f"Package: {PACKAGE}\n"
        f"Version: {version}\n"
        f"Architecture: {arch}\n"
        f"Maintainer: {maintainer}\n"
        f"Installed-Size: {installed_size_kib(root)}\n"
        f"Depends: {', '.join(depends)}\n"
        "Suggests: postgresql\n"
        "Section: admin\n"
        "Priority: optional\n"
        "Description: Mamori remote-work endpoint guard (server)\n"
        " The central server of Mamori: it enrolls the organisation's PCs, serves\n"
        " the policies IT signs, stores the agents' events without loss and gives\n"
        " IT a console, exports and compliance reports.\n"
        " .\n"
        " It runs as its own system user under a sandboxed systemd unit, with\n"
        " SQLite in /var/lib/mamori-server or an external PostgreSQL.\n"
    )
