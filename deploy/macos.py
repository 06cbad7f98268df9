"""``mamori package pkg``: everything the macOS pkg needs, written here; the pkg itself is built on a Mac.

pkgbuild and productbuild exist only on macOS, so this writes a directory with the pkg root (the LaunchAgent,
the baked configuration under ``defaults/``), the postinstall script, the agent's wheel, the PPPC profile and
a managed-preferences example, plus ``build-pkg.sh`` that makes the .pkg on a Mac (docs/admin-guide.md,
"macOS"). The plists are written with plistlib, so they parse wherever plistlib does.

Why ``defaults/``: a pkg overwrites whatever its payload holds, so configuration files in the payload would
lose IT's edits on every upgrade. postinstall copies each baked file to its live place only when none exists.
"""

from __future__ import annotations

import plistlib
import shutil
import stat
import subprocess
import sys
import uuid
from pathlib import Path, PurePosixPath
from typing import Any

from deploy.bake import PackageError, PackageInputs, agent_toml, toml_string
from deploy.sources import installer_dir, project_source

LABEL = "jp.co.mamori.agent"
APP_DIR = PurePosixPath("/Library/Application Support/Mamori")
PYTHON = APP_DIR / "venv/bin/python3"
# python.org's installer Python is signed by the Python Software Foundation (team DJ3H93M7VJ); build-pkg.sh
# uses that Python, so this is the code requirement TCC checks for the agent's interpreter.
PYTHON_REQUIREMENT = (
    'identifier "org.python.python" and anchor apple generic and certificate leaf[subject.OU] = "DJ3H93M7VJ"'
)
_NAMESPACE = uuid.UUID("0e7f3c52-1b9d-4a8e-b6f4-2c5d8e9a1f37")


def _uuid(inputs: PackageInputs, what: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{inputs.server}/{what}")).upper()


def pppc_profile(inputs: PackageInputs) -> dict[str, Any]:
    """A configuration profile (PPPC): Accessibility allowed for the agent's interpreter (the hotkey, window
    list); Screen Recording may only be left to the worker (Apple lets MDM allow it for standard users to
    switch on, never switch it on itself), so the agent runs degraded until they do and says so."""

    def entry(**extra: Any) -> dict[str, Any]:
        return {
            "Identifier": str(PYTHON),
            "IdentifierType": "path",
            "CodeRequirement": PYTHON_REQUIREMENT,
            "StaticCode": False,
            "Comment": "Mamori agent",
            **extra,
        }

    return {
        "PayloadType": "Configuration",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{LABEL}.pppc",
        "PayloadUUID": _uuid(inputs, "pppc"),
        "PayloadDisplayName": "Mamori agent privacy permissions",
        "PayloadDescription": "Lets the Mamori agent see and cover windows holding customer data.",
        "PayloadScope": "System",
        "PayloadContent": [
            {
                "PayloadType": "com.apple.TCC.configuration-profile-policy",
                "PayloadVersion": 1,
                "PayloadIdentifier": f"{LABEL}.pppc.tcc",
                "PayloadUUID": _uuid(inputs, "pppc.tcc"),
                "PayloadDisplayName": "Mamori agent",
                "Services": {
                    "Accessibility": [entry(Allowed=True)],
                    "ScreenCapture": [entry(Authorization="AllowStandardUserToSetSystemService")],
                    "ListenEvent": [entry(Authorization="AllowStandardUserToSetSystemService")],
                },
            }
        ],
    }


def managed_preferences(inputs: PackageInputs) -> dict[str, Any]:
    """The managed preferences (domain jp.co.mamori.agent) an MDM pushes to override the baked enrollment."""
    prefs: dict[str, Any] = {"ServerURL": inputs.server, "EnrollSecret": inputs.enroll_secret}
    if inputs.group:
        prefs["Group"] = inputs.group
    return prefs


def machine_toml(inputs: PackageInputs) -> str:
    lines = [
        f"# {APP_DIR}/machine.toml — this PC's one enrollment (written by the pkg's postinstall as root).",
        f"state_dir = {toml_string(APP_DIR / 'state')}",
        "trusted_keys = ["
        + ", ".join(toml_string(APP_DIR / "keys" / k.name) for k in inputs.trusted_keys)
        + "]",
        f"server = {toml_string(inputs.server)}",
    ]
    if inputs.server_ca is not None:
        lines.append(f"server_ca = {toml_string(APP_DIR / 'ca.pem')}")
    lines.append("tray = false")
    return "\n".join(lines) + "\n"


def _write(path: Path, data: bytes | str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    path.chmod(mode)


def _wheel(into: Path) -> Path:
    """The agent's wheel, built from the source checkout (the Mac installs it and its dependencies)."""
    into.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(into),
            str(project_source()),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    wheels = sorted(into.glob("mamori-*.whl"))
    if result.returncode != 0 or not wheels:
        tail = " | ".join(result.stderr.strip().splitlines()[-3:])
        raise PackageError(f"pip wheel failed (exit {result.returncode}): {tail}")
    return wheels[-1]


def write_pkg_sources(inputs: PackageInputs, out_dir: Path, *, build_wheel: bool = True) -> Path:
    """Write ``out_dir/mamori-agent-<version>-<revision>-macos/`` and return it."""
    if inputs.insecure_http:
        raise PackageError("--insecure-http: only for a lab .deb; Windows and macOS PCs enroll over https://")
    assets = installer_dir() / "macos"
    target = out_dir / f"mamori-agent-{inputs.version}-{inputs.revision}-macos"
    if target.exists():
        shutil.rmtree(target)
    root = target / "root"
    launch_agent = plistlib.loads((assets / f"{LABEL}.plist").read_bytes())
    _write(root / f"Library/LaunchAgents/{LABEL}.plist", plistlib.dumps(launch_agent))
    defaults = root / str(APP_DIR).lstrip("/") / "defaults"
    _write(defaults / "agent.toml", agent_toml(inputs, APP_DIR, header=f"{APP_DIR}/agent.toml"))
    _write(defaults / "machine.toml", machine_toml(inputs))
    for key in inputs.trusted_keys:
        _write(defaults / "keys" / key.name, key.data)
    if inputs.policy is not None:
        _write(defaults / "policy.dsse.json", inputs.policy)
    if inputs.server_ca is not None:
        _write(defaults / "ca.pem", inputs.server_ca)
    scripts = target / "scripts"
    _write(scripts / "postinstall", (assets / "postinstall").read_bytes(), 0o755)
    _write(
        scripts / "enrollment.defaults",
        f"MAMORI_SERVER='{inputs.server}'\nMAMORI_ENROLL_SECRET='{inputs.enroll_secret}'\n"
        f"MAMORI_GROUP='{inputs.group or ''}'\n",
        0o600,
    )
    _write(target / "mamori-pppc.mobileconfig", plistlib.dumps(pppc_profile(inputs)))
    _write(target / f"{LABEL}.managed.plist", plistlib.dumps(managed_preferences(inputs)), 0o600)
    _write(target / "build-pkg.sh", (assets / "build-pkg.sh").read_bytes(), 0o755)
    source = f"$here/sources/{_wheel(target / 'sources').name}" if build_wheel else "mamori"
    version = f"{inputs.version}.{inputs.revision}"
    _write(target / "package.env", f'MAMORI_VERSION="{version}"\nMAMORI_SOURCE="{source}"\n')
    for path in target.rglob("*"):
        if path.is_dir():
            path.chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    return target
