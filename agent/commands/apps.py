"""``mamori agent apps [--config FILE] [--json]``: the open windows, the rule that matches each and why the
others do not (SPEC.md, Command line; issue 11).

For administrators writing ``[[customer_apps]]`` rules and for workers asking "is this window protected?".
Window titles are printed on this terminal only; they are never logged, stored or sent (SPEC.md, Events).
Each window shows how its process was identified: ``process`` (``_NET_WM_PID`` or the X-Resource client pid on
X11; the OS elsewhere) or ``wm_class`` (no pid: the window's class stands in, a weaker identity).

Exit 0 when the windows could be read, 2 when there is no trusted policy or no window list on this desktop.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.platform.base import Window
    from policy.model import CustomerApp

EXIT_OK = 0
EXIT_UNKNOWN = 2

TEXT = {
    "en": {
        "header": "{count} window(s); policy {id} v{version}",
        "covered": "covered by rule {rule}",
        "not_covered": "not customer data",
        "hidden": "minimized or empty: nothing to draw over",
        "process": "{rule}: process {name} is not in its processes/families",
        "title": "{rule}: process matches, title does not",
        "no_process": "(unknown process)",
        "by_class": "(no pid: matched by window class)",
        "no_rules": "the policy names no customer-data apps",
        "unmatched": "rules that match no open window: {rules}",
    },
    "ja": {
        "header": "ウィンドウ {count} 個 / ポリシー {id} 版 {version}",
        "covered": "ルール「{rule}」で保護対象",
        "not_covered": "顧客データではありません",
        "hidden": "最小化または空のため隠す必要なし",
        "process": "{rule}: プロセス {name} は processes/families に含まれません",
        "title": "{rule}: プロセスは一致、タイトルが一致しません",
        "no_process": "(プロセス不明)",
        "by_class": "(PID なし: ウィンドウクラスで照合)",
        "no_rules": "ポリシーに顧客データのアプリが指定されていません",
        "unmatched": "一致するウィンドウがないルール: {rules}",
    },
}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "apps",
        help="open windows, the rule each matches and why the others do not (titles shown locally only)",
        description="List the open windows and which customer_apps rule covers each.",
    )
    parser.add_argument("--config", type=Path, default=None, help="agent.toml (default: the installed one)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.set_defaults(func=run_apps)


def describe(rules: tuple[CustomerApp, ...], windows: list[Window]) -> dict[str, Any]:
    """The JSON document: one entry per window, topmost last, and the rules that match nothing."""
    from agent.decide.match import explain, identity

    entries = []
    matched: set[str] = set()
    for w in windows:
        verdicts = explain(rules, w)
        rule = next((v.rule for v in verdicts if v.why == "matched"), None)
        if rule is not None:
            matched.add(rule)
        source, name = identity(w)
        entries.append(
            {
                "id": w.id,
                "title": w.title,
                "process": w.process_name,
                "pid": w.pid,
                "pid_source": w.pid_source,
                "wm_class": w.wm_class,
                "identity": source,
                "identity_name": name,
                "minimized": w.minimized,
                "rule": rule,
                "covered_when_protecting": rule is not None,
                "rules": [{"rule": v.rule, "why": v.why} for v in verdicts],
            }
        )
    return {
        "windows": entries,
        "unmatched_rules": [r.name for r in rules if r.name not in matched],
    }


def render_text(doc: dict[str, Any], policy_id: str, version: int, language: str) -> str:
    t = TEXT[language if language in TEXT else "en"]
    lines = [t["header"].format(count=len(doc["windows"]), id=policy_id, version=version)]
    for w in doc["windows"]:
        who = w["identity_name"] or t["no_process"]
        if w["identity"] == "wm_class":
            who = f"{who} {t['by_class']}"
        lines.append(f"- {w['title'] or '(untitled)'}  [{who}, pid {w['pid'] or '?'}]")
        if w["rule"] is not None:
            lines.append(f"    {t['covered'].format(rule=w['rule'])}")
            continue
        hidden = any(v["why"] == "hidden" for v in w["rules"])
        lines.append(f"    {t['hidden'] if hidden else t['not_covered']}")
        for v in w["rules"]:
            if v["why"] in ("process", "title"):
                lines.append(f"      {t[v['why']].format(rule=v['rule'], name=w['identity_name'] or '?')}")
    if doc["unmatched_rules"]:
        lines.append(t["unmatched"].format(rules=", ".join(doc["unmatched_rules"])))
    return "\n".join(lines)


def run_apps(args: argparse.Namespace) -> int:
    from agent.commands.check import load_trusted_policy
    from agent.config import load_config
    from agent.i18n import detect_language
    from agent.platform import resolve_platform
    from agent.platform.base import Closable
    from agent.policy_source import PolicySource
    from core.clock import SystemClock
    from core.errors import MamoriError

    config = load_config(args.config)
    policy = load_trusted_policy(PolicySource(config, SystemClock()))
    desktop = resolve_platform().create_desktop(config.lock_command)
    try:
        if not desktop.capabilities().window_list:
            notes = "; ".join(desktop.capabilities().notes)
            raise MamoriError(f"this desktop gives no window list ({notes})", exit_code=EXIT_UNKNOWN)
        windows = desktop.windows()
    finally:
        if isinstance(desktop, Closable):
            desktop.close()
    doc = describe(policy.customer_apps, windows)
    if args.json:
        print(json.dumps({"policy": {"id": policy.id, "version": policy.version}, **doc}, ensure_ascii=False))
    else:
        language = detect_language(config.language)
        if not policy.customer_apps:
            print(TEXT[language if language in TEXT else "en"]["no_rules"])
        print(render_text(doc, policy.id, policy.version, language))
    return EXIT_OK
