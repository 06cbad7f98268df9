"""The `mamori` command: argument parsing and dispatch only (SPEC.md, "Command line").

Each command group lives in its own module exposing ``register(subparsers)``; a command sets
``func(args) -> int`` on its parser. Command modules import heavy libraries inside their functions so that
``mamori --help`` and the light commands stay fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from core import __version__
from core.errors import MamoriError

# (group, help, modules registering commands in that group)
GROUPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("policy", "author, sign, verify and apply signed policies", ("policy.cli",)),
    (
        "agent",
        "the endpoint agent",
        ("agent.commands",),
    ),
    ("server", "the central server", ("server.cli",)),
    ("package", "build the installers IT deploys (deb, msi, pkg)", ("deploy.cli",)),
)

EXIT_INTERNAL = 70


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Every group; with ``only``, the commands of that group alone are imported and registered."""
    parser = argparse.ArgumentParser(prog="mamori", description="Mamori (守り) remote-work endpoint guard")
    parser.add_argument("--version", action="version", version=f"mamori {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    groups = parser.add_subparsers(dest="group", metavar="{policy,agent,server,package,demo}")
    for name, help_text, modules in GROUPS:
        group = groups.add_parser(name, help=help_text)
        group.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        commands = group.add_subparsers(dest="command", metavar="COMMAND")
        for module_name in modules if only in (None, name) else ():
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as err:
                if err.name is None or not (module_name + ".").startswith(err.name + "."):
                    raise
                continue  # that part of the product is not in this build (the frozen agent has no server)
            module.register(commands)
        group.set_defaults(func=_group_help(group))
    demo = groups.add_parser("demo", help="run server and agent locally on the embedded defaults")
    demo.set_defaults(func=_run_demo)
    return parser


def _group_help(group: argparse.ArgumentParser) -> object:
    def show(_args: argparse.Namespace) -> int:
        group.print_help(sys.stderr)
        return 2

    return show


def _run_demo(args: argparse.Namespace) -> int:
    from agent.demo import run_demo

    return run_demo(args)


def main(argv: Sequence[str] | None = None) -> int:
    words = [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")]
    # The named group's commands only: `mamori agent run` stays running for the whole session, and the
    # server's and the installer builder's modules have no use in it (0.4 MB in a fresh interpreter).
    group = words[0] if words and words[0] in {name for name, _, _ in GROUPS} else None
    parser = build_parser(only=group)
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(func(args))
    except MamoriError as err:
        if debug:
            raise
        print(f"mamori: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # the last line of defence: one line, never a traceback without --debug
        if debug:
            raise
        print(
            f"mamori: internal error: {type(err).__name__}: {err} (run with --debug for details)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
