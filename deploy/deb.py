"""``mamori package deb``: a Debian package of the agent with its configuration and enrollment baked in.

Layout (docs/admin-guide.md, "Install on Linux"):

- ``/opt/mamori``: the agent's own Python environment, built at package time with the system Python
  (``/usr/bin/python3``) and pip from the index this machine is configured for (pip.conf, ``--pip-option``), so
  that nothing is fetched when a PC installs it. pip and setuptools are removed from it afterwards.
- ``/etc/mamori``: agent.toml, machine.toml, keys/, policy.dsse.json, ca.pem: conffiles, kept on upgrade.
- ``/usr/share/mamori/enrollment.defaults`` (0600): the baked server, secret and group; ``/etc/default/mamori``,
  when IT writes one, wins over it.
- a systemd user unit (``Restart=always``) enabled for every user, an XDG autostart entry for sessions without
  a systemd user instance, and a system unit that enrolls the PC once into ``/var/lib/mamori``.

Maintainer scripts and units are in installer/linux/; lintian overrides, each explained, in
installer/linux/debian/lintian-overrides.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from datetime import datetime
from email.utils import format_datetime
from pathlib import Path, PurePosixPath

from deploy.bake import PackageError, PackageInputs, agent_toml, toml_string
from deploy.sources import installer_dir, project_source

logger = logging.getLogger(__name__)

PACKAGE = "mamori-agent"
PREFIX = PurePosixPath("/opt/mamori")
CONFIG_DIR = PurePosixPath("/etc/mamori")
DEFAULT_PYTHON = "/usr/bin/python3"
DEFAULT_MAINTAINER = "Mamori packaging <packaging@mamori.example.com>"
_MANYLINUX = re.compile(r"manylinux_(\d+)_(\d+)")
_LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}

Run = Callable[[Sequence[str]], None]


def run_tool(argv: Sequence[str]) -> None:
    try:
        result = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    except FileNotFoundError as err:
        raise PackageError(f"{argv[0]}: not found; {_install_hint(argv[0])}") from err
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise PackageError(f"{' '.join(argv[:3])} … failed (exit {result.returncode}): {' | '.join(tail)}")


def _install_hint(tool: str) -> str:
    return {
        "dpkg-deb": "build on Debian or Ubuntu (apt-get install dpkg)",
        "python3": "install Python 3.11 or later with venv (apt-get install python3-venv)",
    }.get(Path(tool).name, f"install {Path(tool).name}")


def build_deb(
    inputs: PackageInputs,
    out_dir: Path,
    *,
    now: datetime,
    wheel: Path | None = None,
    python: str = DEFAULT_PYTHON,
    pip_options: Sequence[str] = (),
    maintainer: str = DEFAULT_MAINTAINER,
    compression: str = "xz",
    run: Run = run_tool,
) -> Path:
    """Build ``out_dir/mamori-agent_<version>-<revision>_<arch>.deb`` and return its path."""
    arch = preflight(compression, python)
    source = wheel if wheel is not None else project_source()
    out_dir.mkdir(parents=True, exist_ok=True)
    version = f"{inputs.version}-{inputs.revision}"
    with tempfile.TemporaryDirectory(prefix="mamori-deb-") as tmp:
        root = Path(tmp) / "root"
        build_runtime(root, source, python=python, pip_options=pip_options, run=run)
        _lay_out(root, inputs)
        _docs(root, inputs, version, maintainer, now)
        control = _control(root, inputs, version=version, arch=arch, maintainer=maintainer, python=python)
        debian_dir(root, control)
        target = out_dir / f"{PACKAGE}_{version}_{arch}.deb"
        run(["dpkg-deb", "--root-owner-group", f"-Z{compression}", "--build", str(root), str(target)])
    return target


def preflight(compression: str, python: str) -> str:
    """Check the build tools and options (one-line errors naming the fix); return dpkg's architecture."""
    if shutil.which("dpkg-deb") is None:
        raise PackageError("dpkg-deb: not found; build the .deb on Debian or Ubuntu (apt-get install dpkg)")
    if compression not in ("xz", "gzip"):
        raise PackageError(f"--compression {compression!r}: xz (smaller, the default) or gzip (faster)")
    if not Path(python).exists():
        raise PackageError(f"{python}: no such Python; pass --python /usr/bin/python3.11 (with venv)")
    return subprocess.run(
        ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
    ).stdout.strip()


# --- the agent's environment ---------------------------------------------------------------------------------------


def build_runtime(
    root: Path,
    source: Path | str,
    *,
    python: str,
    pip_options: Sequence[str],
    run: Run,
    final: PurePosixPath = PREFIX,
) -> Path:
    """A venv at root/``final`` (/opt/mamori) holding ``source`` (the project, or ``path[server]``) and its
    dependencies, rewritten to live at ``final``."""
    prefix = root / final.relative_to("/")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    run([python, "-m", "venv", str(prefix)])
    pip = [str(prefix / "bin" / "python3"), "-m", "pip", "--disable-pip-version-check", "--no-input"]
    # A cache of its own per interpreter: a wheel pip built earlier for another Python (pyenv, a venv) would
    # carry that Python's RUNPATH into the package.
    cache = _pip_cache(python)
    run(
        [
            *pip,
            "install",
            "--quiet",
            "--no-compile",
            "--no-warn-script-location",
            f"--cache-dir={cache}",
            *pip_options,
            str(source),
        ]
    )
    # Nothing may be fetched on the PC, so the tools that fetch go; the agent never imports them.
    run([*pip, "uninstall", "--quiet", "--yes", "pip", "setuptools"])
    _relocate(prefix, final, os.path.realpath(python))
    return prefix


def _pip_cache(python: str) -> Path:
    import platformdirs

    tag = hashlib.sha256(os.path.realpath(python).encode()).hexdigest()[:12]
    return Path(platformdirs.user_cache_dir("mamori", appauthor=False)) / f"package-pip-{tag}"


def _relocate(prefix: Path, final: PurePosixPath, interpreter: str) -> None:
    """Point the venv's scripts and pyvenv.cfg at ``final`` and its python at the versioned system interpreter
    (``/usr/bin/python3.11``, not ``python3``, which a distribution upgrade moves to another minor version);
    keep only the ``mamori`` entry point; make library files non-executable."""
    built = str(prefix)
    bindir = prefix / "bin"
    for entry in bindir.iterdir():
        if entry.name.startswith("python"):
            entry.unlink()
            entry.symlink_to(interpreter)
            continue
        if entry.name != "mamori":
            entry.unlink()  # activate scripts name the build directory; other entry points are not ours
            continue
        data = entry.read_bytes()
        if data.startswith(b"#!") and built.encode() in data.split(b"\n", 1)[0]:
            first, _, rest = data.partition(b"\n")
            entry.write_bytes(first.replace(built.encode(), str(final).encode()) + b"\n" + rest)
    cfg = prefix / "pyvenv.cfg"
    cfg.write_text(cfg.read_text(encoding="utf-8").replace(built, str(final)), encoding="utf-8")
    for cache in sorted(prefix.rglob("__pycache__"), reverse=True):
        shutil.rmtree(cache)
    for direct_url in prefix.glob("lib/python3*/site-packages/*.dist-info/direct_url.json"):
        direct_url.unlink()  # names the build machine's checkout; pip does not need it
    for path in (prefix / "lib").rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(0o644)  # modules and shared objects are loaded, never executed
    include = prefix / "include"
    if include.is_dir() and not any(p.is_file() for p in include.rglob("*")):
        shutil.rmtree(include)
    leftovers = [p for p in prefix.rglob("*") if p.is_file() and not p.is_symlink() and _mentions(p, built)]
    if leftovers:
        raise PackageError(
            f"{leftovers[0]}: still names the build directory {built}; the package would not work"
        )


def _mentions(path: Path, text: str) -> bool:
    if path.suffix in {".so", ".pyc", ".png", ".ico", ".gz"}:
        return False
    try:
        return text.encode() in path.read_bytes()
    except OSError:
        return False


# --- files ---------------------------------------------------------------------------------------------------------


def install_file(root: Path, dest: str, data: bytes | str, mode: int = 0o644) -> Path:
    path = root / dest.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    path.chmod(mode)
    return path


def asset(name: str) -> bytes:
    return (installer_dir() / "linux" / name).read_bytes()


def machine_toml(inputs: PackageInputs) -> str:
    """The configuration the machine-wide enrollment runs with: the same server and keys, state in /var/lib."""
    lines = [
        "# /etc/mamori/machine.toml — machine-wide state (this PC's one enrollment), used by mamori-enroll.service.",
        'state_dir = "/var/lib/mamori"',
        "trusted_keys = ["
        + ", ".join(toml_string(CONFIG_DIR / "keys" / k.name) for k in inputs.trusted_keys)
        + "]",
        f"server = {toml_string(inputs.server)}",
    ]
    if inputs.server_ca is not None:
        lines.append(f"server_ca = {toml_string(CONFIG_DIR / 'ca.pem')}")
    lines.append("tray = false")
    return "\n".join(lines) + "\n"


def enrollment_defaults(inputs: PackageInputs) -> str:
    # bake.load_inputs allows no quote, space or shell metacharacter in these values, so '…' is safe.
    return (
        "# Baked by `mamori package deb`; /etc/default/mamori (IT's install-time values) wins over these.\n"
        f"MAMORI_SERVER='{inputs.server}'\n"
        f"MAMORI_ENROLL_SECRET='{inputs.enroll_secret}'\n"
        f"MAMORI_GROUP='{inputs.group or ''}'\n"
        f"MAMORI_INSECURE_HTTP='{'1' if inputs.insecure_http else ''}'\n"
    )


def _lay_out(root: Path, inputs: PackageInputs) -> None:
    etc = str(CONFIG_DIR)
    install_file(root, f"{etc}/agent.toml", agent_toml(inputs, CONFIG_DIR, header="/etc/mamori/agent.toml"))
    install_file(root, f"{etc}/machine.toml", machine_toml(inputs))
    for key in inputs.trusted_keys:
        install_file(root, f"{etc}/keys/{key.name}", key.data)
    if inputs.policy is not None:
        install_file(root, f"{etc}/policy.dsse.json", inputs.policy)
    if inputs.server_ca is not None:
        install_file(root, f"{etc}/ca.pem", inputs.server_ca)
    install_file(root, "/usr/share/mamori/enrollment.defaults", enrollment_defaults(inputs), 0o600)
    install_file(root, "/usr/lib/systemd/user/mamori-agent.service", asset("mamori-agent.service"))
    install_file(root, "/usr/lib/systemd/system/mamori-enroll.service", asset("mamori-enroll.service"))
    install_file(root, "/etc/xdg/autostart/mamori-agent.desktop", asset("mamori-agent.desktop"))
    install_file(root, "/usr/libexec/mamori/session-start", asset("session-start"), 0o755)
    install_file(root, "/usr/libexec/mamori/enroll", asset("enroll"), 0o755)
    link = root / "usr/bin/mamori"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(PREFIX / "bin" / "mamori")
    install_file(root, "/usr/share/man/man1/mamori.1.gz", gzip_bytes(asset("debian/mamori.1")))
    install_file(root, f"/usr/share/lintian/overrides/{PACKAGE}", asset("debian/lintian-overrides"))


def _docs(root: Path, inputs: PackageInputs, version: str, maintainer: str, now: datetime) -> None:
    doc = f"/usr/share/doc/{PACKAGE}"
    install_file(root, f"{doc}/copyright", asset("debian/copyright"))
    changelog = (
        f"{PACKAGE} ({version}) unstable; urgency=medium\n\n"
        f"  * Mamori agent {inputs.version}, built by `mamori package deb` for\n"
        f"    {inputs.server}\n\n"
        f" -- {maintainer}  {format_datetime(now)}\n"
    )
    install_file(root, f"{doc}/changelog.Debian.gz", gzip_bytes(changelog.encode("utf-8")))


def gzip_bytes(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=9, mtime=0) as handle:
        handle.write(data)
    return buffer.getvalue()


# --- DEBIAN/ -------------------------------------------------------------------------------------------------------


def glibc_needed(prefix: Path) -> tuple[int, int]:
    """The newest glibc any bundled wheel was built for (its manylinux tag); this machine's for local builds."""
    needed = (2, 17)
    for wheel_file in prefix.glob("lib/python3*/site-packages/*.dist-info/WHEEL"):
        for line in wheel_file.read_text(encoding="utf-8").splitlines():
            if not line.startswith("Tag:") or line.endswith("-any"):
                continue
            platform_tag = line.rsplit("-", 1)[-1]
            match = _MANYLINUX.search(platform_tag)
            found = None
            if match:
                found = (int(match.group(1)), int(match.group(2)))
            elif platform_tag.split("_x86")[0] in _LEGACY_MANYLINUX:
                found = _LEGACY_MANYLINUX[platform_tag.split("_x86")[0]]
            elif platform_tag.startswith("linux_"):
                found = _this_glibc()
            if found and found > needed:
                needed = found
    return needed


def _this_glibc() -> tuple[int, int]:
    version = os.confstr("CS_GNU_LIBC_VERSION") or "glibc 2.17"
    major, minor = version.split()[-1].split(".")[:2]
    return int(major), int(minor)


def python_minor(python: str) -> str:
    result = subprocess.run(
        [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def installed_size_kib(root: Path) -> int:
    total = 0
    for path in root.rglob("*"):
        if path.is_symlink():
            total += 1
        elif path.is_file():
            total += (path.stat().st_size + 1023) // 1024
        elif path.is_dir():
            total += 1
    return total


def _control(
    root: Path, inputs: PackageInputs, *, version: str, arch: str, maintainer: str, python: str
) -> str:
    minor = python_minor(python)
    glibc = ".".join(map(str, glibc_needed(root / PREFIX.relative_to("/"))))
    depends = [
        f"python{minor}",  # the venv's interpreter is the system one (/usr/bin/python{minor})
        "python3-tk",  # the cover helper (Tk); tkinter is not pip-installable
        f"libc6 (>= {glibc})",
        "libstdc++6",  # needed by libraries bundled in the wheels (pillow's libavif)
        "init-system-helpers (>= 1.58)",  # deb-systemd-helper --user
    ]
    return (
        f"Package: {PACKAGE}\n"
        f"Version: {version}\n"
        f"Architecture: {arch}\n"
        f"Maintainer: {maintainer}\n"
        f"Installed-Size: {installed_size_kib(root)}\n"
        f"Depends: {', '.join(depends)}\n"
        "Recommends: gir1.2-ayatanaappindicator3-0.1, libnotify-bin\n"
        "Section: admin\n"
        "Priority: optional\n"
        "Description: Mamori remote-work endpoint guard (agent)\n"
        " Mamori protects customer personal data on remote workers' PCs: it covers\n"
        " customer windows when the worker steps away or shares the screen, checks\n"
        " VPN, Wi-Fi and TLS posture, and reports to the central server.\n"
        " .\n"
        " This build carries its organisation's configuration and enrolls the PC\n"
        " once, machine-wide, with its Mamori server.\n"
    )


def debian_dir(root: Path, control: str, scripts: str = "debian") -> None:
    """DEBIAN/: control, conffiles (everything under /etc), the maintainer scripts of installer/linux/``scripts``,
    md5sums; directories 0755."""
    debian = root / "DEBIAN"
    debian.mkdir()
    (debian / "control").write_text(control, encoding="utf-8")
    conffiles = sorted(
        "/" + str(p.relative_to(root))
        for base in (root / "etc",)
        for p in base.rglob("*")
        if p.is_file() and not p.is_symlink()
    )
    (debian / "conffiles").write_text("\n".join(conffiles) + "\n", encoding="utf-8")
    for script in ("postinst", "prerm", "postrm"):
        path = debian / script
        path.write_bytes(asset(f"{scripts}/{script}"))
        path.chmod(0o755)
    sums = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink() and debian not in path.parents:
            digest = hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
            sums.append(f"{digest}  {path.relative_to(root)}")
    (debian / "md5sums").write_text("\n".join(sums) + "\n", encoding="utf-8")
    (debian / "md5sums").chmod(0o644)
    for path in root.rglob("*"):
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)
