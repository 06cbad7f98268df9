"""``mamori package (deb|msi|pkg)``: one command per OS installer (SPEC.md, "Command line"). Wiring only."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from core.clock import Clock, SystemClock

# Tests replace this to move time; the commands never call time functions directly (STYLE.md).
clock: Clock = SystemClock()


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", required=True, metavar="URL", help="the Mamori server, https://…")
    parser.add_argument(
        "--enroll-secret",
        required=True,
        metavar="S",
        help="from `mamori server enroll-secret create --uses N`; the PC enrolls once with it",
    )
    parser.add_argument(
        "--group", metavar="G", help="the group the secret enrolls into (checked at enrollment)"
    )
    parser.add_argument(
        "--trusted-key",
        action="append",
        default=[],
        type=Path,
        metavar="PUB",
        help="policy-signing public key agents trust (repeatable, e.g. old and new during a rotation)",
    )
    parser.add_argument(
        "--policy", type=Path, metavar="BUNDLE", help="a signed policy to install as the drop"
    )
    parser.add_argument(
        "--server-ca", type=Path, metavar="PEM", help="CA bundle the agent pins for the server"
    )
    parser.add_argument(
        "--revision", default="1", metavar="N", help="package revision: raise it to re-bake the same version"
    )
    parser.add_argument(
        "--insecure-http",
        action="store_true",
        help="allow a plain http:// --server (a lab, never production)",
    )
    parser.add_argument(
        "-o", "--output-dir", type=Path, default=Path("dist"), metavar="DIR", help="where to write (./dist)"
    )


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "deb",
        help="a Debian/Ubuntu .deb (built here with dpkg-deb)",
        description="Build mamori-agent_VERSION-REV_ARCH.deb: the agent in /opt/mamori with its dependencies, "
        "configuration in /etc/mamori (kept on upgrade), started for every user, enrolled once per PC.",
    )
    _common(p)
    p.add_argument("--wheel", type=Path, help="install this mamori wheel instead of the source checkout")
    p.add_argument("--python", default="/usr/bin/python3", help="the system Python the PCs have (with venv)")
    p.add_argument(
        "--pip-option",
        action="append",
        default=[],
        metavar="OPT",
        help="passed to pip when the dependencies are fetched, e.g. --pip-option=--index-url=https://…",
    )
    p.add_argument(
        "--maintainer", default=None, help='"Name <mail>" for the package (default: Mamori packaging)'
    )
    p.add_argument(
        "--compression", choices=("xz", "gzip"), default="xz", help="xz (smaller, default) or gzip (faster)"
    )
    p.set_defaults(func=cmd_deb)

    p = subparsers.add_parser(
        "msi",
        help="a Windows .msi (built here with wixl from installer/windows/mamori.wxs)",
        description="Build mamori-agent-VERSION.msi: per-machine, properties SERVER_URL, ENROLL_SECRET and GROUP "
        "override the baked values, a logon scheduled task starts the agent for every user.",
    )
    _common(p)
    p.add_argument(
        "--payload",
        type=Path,
        help="the frozen agent folder built on Windows (installer/windows/build-agent.ps1), "
        "holding mamori.exe and the windowless mamoriw.exe",
    )
    p.set_defaults(func=cmd_msi)

    p = subparsers.add_parser(
        "pkg",
        help="the macOS pkg sources (LaunchAgent, PPPC profile, managed prefs) and the script that builds it on a Mac",
        description="Write the pkg root, scripts and profiles; run build-pkg.sh on a Mac to make the .pkg.",
    )
    _common(p)
    p.set_defaults(func=cmd_pkg)

    p = subparsers.add_parser(
        "server-deb",
        help="a Debian/Ubuntu .deb of the Mamori server (system unit, its own user)",
        description="Build mamori-server_VERSION-REV_ARCH.deb: the server in /opt/mamori-server with its "
        "dependencies, /etc/mamori-server/server.toml (kept on upgrade), mamori-server.service running as the "
        "system user mamori-server with its data in /var/lib/mamori-server.",
    )
    p.add_argument("--listen", default="127.0.0.1:8443", metavar="HOST:PORT", help="(127.0.0.1:8443)")
    p.add_argument(
        "--db",
        metavar="URL",
        help="database URL (default: SQLite in /var/lib/mamori-server); a password "
        "belongs in $MAMORI_DB_URL (a systemd drop-in), not here",
    )
    p.add_argument(
        "--trusted-key",
        action="append",
        default=[],
        type=Path,
        metavar="PUB",
        help="policy-signing public key the server verifies published policies against (repeatable)",
    )
    p.add_argument(
        "--revision", default="1", metavar="N", help="package revision: raise it to re-build the same version"
    )
    p.add_argument(
        "-o", "--output-dir", type=Path, default=Path("dist"), metavar="DIR", help="where to write (./dist)"
    )
    p.add_argument("--wheel", type=Path, help="install this mamori wheel instead of the source checkout")
    p.add_argument("--python", default="/usr/bin/python3", help="the system Python of the server (with venv)")
    p.add_argument("--pip-option", action="append", default=[], metavar="OPT", help="passed to pip")
    p.add_argument("--maintainer", default=None, help='"Name <mail>" for the package')
    p.add_argument("--compression", choices=("xz", "gzip"), default="xz")
    p.set_defaults(func=cmd_server_deb)


def _inputs(args: argparse.Namespace) -> Any:
    from deploy.bake import load_inputs

    return load_inputs(
        server=args.server,
        enroll_secret=args.enroll_secret,
        group=args.group,
        trusted_keys=args.trusted_key,
        policy=args.policy,
        server_ca=args.server_ca,
        now=clock.now(),
        revision=args.revision,
        insecure_http=args.insecure_http,
    )


def _report(path: Path, started: float) -> None:
    size = (
        path.stat().st_size
        if path.is_file()
        else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    )
    print(f"wrote {path} ({size / 1e6:.1f} MB, {time.monotonic() - started:.0f} s)")


def cmd_deb(args: argparse.Namespace) -> int:
    from deploy.deb import DEFAULT_MAINTAINER, build_deb

    started = time.monotonic()
    inputs = _inputs(args)
    print("building the agent's environment (pip) and the package; this takes a minute…", file=sys.stderr)
    path = build_deb(
        inputs,
        args.output_dir,
        now=clock.now(),
        wheel=args.wheel,
        python=args.python,
        pip_options=args.pip_option,
        maintainer=args.maintainer or DEFAULT_MAINTAINER,
        compression=args.compression,
    )
    _report(path, started)
    return 0


def cmd_msi(args: argparse.Namespace) -> int:
    from deploy.msi import build_msi

    started = time.monotonic()
    path = build_msi(_inputs(args), args.output_dir, payload=args.payload)
    _report(path, started)
    return 0


def cmd_pkg(args: argparse.Namespace) -> int:
    from deploy.macos import write_pkg_sources

    started = time.monotonic()
    path = write_pkg_sources(_inputs(args), args.output_dir)
    _report(path, started)
    print(f"run {path / 'build-pkg.sh'} on a Mac to build the .pkg (pkgbuild/productbuild)", file=sys.stderr)
    return 0


def cmd_server_deb(args: argparse.Namespace) -> int:
    from deploy.bake import PackageError, load_trusted_keys
    from deploy.deb import DEFAULT_MAINTAINER
    from deploy.server_deb import build_server_deb

    started = time.monotonic()
    if not args.revision.isdigit():
        raise PackageError(f"--revision {args.revision!r}: a number; raise it to re-build the same version")
    keys = load_trusted_keys(args.trusted_key)
    print("building the server's environment (pip) and the package; this takes a minute…", file=sys.stderr)
    path = build_server_deb(
        args.output_dir,
        now=clock.now(),
        listen=args.listen,
        db=args.db,
        trusted_keys=keys,
        revision=args.revision,
        wheel=args.wheel,
        python=args.python,
        pip_options=args.pip_option,
        maintainer=args.maintainer or DEFAULT_MAINTAINER,
        compression=args.compression,
    )
    _report(path, started)
    return 0


__all__ = ["register"]
