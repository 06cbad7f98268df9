"""Where the package builder finds what it packages: the Mamori source tree and its installer/ assets.

`mamori package` runs from a source checkout (docs/admin-guide.md, "Install the admin CLI"): installer/ is not a
Python package, so a wheel-only install has no units, scripts or WiX source to bake. ``--wheel`` replaces the
checkout as the agent that goes into the package, not the assets.
"""

from __future__ import annotations

from pathlib import Path

from deploy.bake import PackageError

_ROOT = Path(__file__).resolve().parent.parent


def project_source() -> Path:
    """The checkout this code runs from (pip installs the agent from it), or a one-line error naming the fix."""
    pyproject = _ROOT / "pyproject.toml"
    if not pyproject.is_file() or 'name = "mamori"' not in pyproject.read_text(encoding="utf-8"):
        raise PackageError(
            f"{_ROOT}: not a Mamori source checkout; pass --wheel mamori-VERSION-py3-none-any.whl"
        )
    return _ROOT


def installer_dir() -> Path:
    path = _ROOT / "installer"
    if not (path / "linux").is_dir():
        raise PackageError(
            f"{path}: installer assets not found; run `mamori package` from a Mamori source checkout"
        )
    return path
