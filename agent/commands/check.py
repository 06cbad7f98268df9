"""``mamori agent check [--config FILE] [--json]``: evaluate every posture check once (SPEC.md, Command line).

Exit 0 compliant, 1 non-compliant (a check failed), 2 could not evaluate (no trusted policy, or a check
errored and none failed). ``--json`` prints exactly
``{"compliant": bool, "checks": [{"id", "status", "mode", "detail"}]}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.posture.base import CheckResult
from core.errors import MamoriError

if TYPE_CHECKING:
    from agent.policy_source import PolicySource
    from policy.model import Policy

EXIT_COMPLIANT = 0
EXIT_NONCOMPLIANT = 1
EXIT_UNKNOWN = 2


class NoTrustedPolicyError(MamoriError):
    """There is no verified policy to evaluate against."""

    def __init__(self, state_dir: Path, reason: str = "", drop: Path | None = None) -> None:
        self.state_dir = state_dir
        why = f" ({reason})" if reason else ""
        fix = (
            f"put a policy signed with one of trusted_keys at {drop}"
            if drop is not None
            else f"apply a signed policy first: mamori policy apply BUNDLE --pub KEY --state-dir {state_dir}"
        )
        super().__init__(f"no trusted policy in {state_dir}{why}; {fix}", exit_code=EXIT_UNKNOWN)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "check",
        help="evaluate every posture check once; exit 0 compliant, 1 non-compliant, 2 could not evaluate",
        description="Evaluate every posture check of the trusted policy once.",
    )
    parser.add_argument("--config", type=Path, default=None, help="agent.toml (default: the installed one)")
    parser.add_argument("--json", action="store_true", help="print one JSON document (SPEC.md format)")
    parser.set_defaults(func=run_check)


def verdict(results: Sequence[CheckResult]) -> tuple[bool, int]:
    """(compliant, exit code): a failure of any enabled check is non-compliance; otherwise an error means the
    posture could not be evaluated."""
    active = [r for r in results if r.mode != "off"]
    if any(r.status == "fail" for r in active):
        return False, EXIT_NONCOMPLIANT
    if any(r.status == "error" for r in active):
        return False, EXIT_UNKNOWN
    return True, EXIT_COMPLIANT


def render_json(results: Sequence[CheckResult], language: str) -> str:
    compliant, _ = verdict(results)
    return json.dumps(
        {"compliant": compliant, "checks": [r.to_json(language) for r in results]}, ensure_ascii=False
    )


def render_text(results: Sequence[CheckResult], language: str) -> str:
    lines = []
    width = max((len(r.id) for r in results), default=4)
    for r in results:
        lines.append(f"{r.status.upper():5}  {r.id:{width}}  [{r.mode}]  {r.detail.get(language)}")
        if r.remediation is not None:
            lines.append(f"{'':5}  {'':{width}}  -> {r.remediation.get(language)}")
    compliant, _ = verdict(results)
    lines.append(
        ("準拠" if language == "ja" else "compliant")
        if compliant
        else ("非準拠" if language == "ja" else "not compliant")
    )
    return "\n".join(lines)


def load_trusted_policy(source: PolicySource) -> Policy:
    """The policy the agent enforces: the trusted store, or agent.toml's policy_bundle (an MDM drop) when the
    store is empty or older, each signature checked now against trusted_keys: the store lives in the worker's
    own state directory and a hand-edited file must not decide the verdict."""
    from policy.errors import PolicyError

    state_dir = source.config.state_dir
    try:
        reading = source.read_with_drop()
    except PolicyError as err:
        raise NoTrustedPolicyError(state_dir, str(err)) from err
    verified = reading.verified
    if verified is None:
        raise NoTrustedPolicyError(state_dir, "; ".join(reading.problems), drop=source.config.policy_bundle)
    for problem in reading.problems:
        print(f"mamori: warning: {problem}", file=sys.stderr)
    if verified.is_expired(source.clock.now()):
        # the agent keeps enforcing its last-known-good policy (SPEC.md, Policy); say so, do not refuse
        print(
            f"mamori: warning: the trusted policy {verified.policy.id} v{verified.policy.version} has expired; "
            "checking against it anyway — publish a new version",
            file=sys.stderr,
        )
    return verified.policy


def run_check(args: argparse.Namespace) -> int:
    from agent.config import load_config
    from agent.i18n import Translator, detect_language
    from agent.platform import resolve_platform
    from agent.policy_source import PolicySource
    from agent.posture.monitor import PostureMonitor
    from core.clock import SystemClock

    config = load_config(args.config)
    policy = load_trusted_policy(PolicySource(config, SystemClock()))
    language = detect_language(config.language)
    translator = Translator(language, {"ja": policy.messages.ja, "en": policy.messages.en})
    monitor = PostureMonitor(
        policy,
        SystemClock(),
        lambda _state, _results: None,
        host=resolve_platform().create_posture_host(),
        translator=translator,
    )
    _state, results = monitor.evaluate()
    print(render_json(results, language) if args.json else render_text(results, language), file=sys.stdout)
    return verdict(results)[1]
