"""Which windows hold customer data (SPEC.md, ``[[customer_apps]]``). Pure: windows and rules in, matches out.

A window is customer data when its process matches one of the rule's ``processes`` (names or globs,
case-insensitive, ``.exe`` optional) or one of its ``families`` (:data:`FAMILIES`: the real executable names of
that kind of app on every OS), and its title matches the rule's ``title`` regex (absent: any title). A rule
with neither processes nor families matches any process.

A window's process is its :attr:`Window.process_name` (the backend found its pid: X11 ``_NET_WM_PID``, else the
X-Resource client pid). When no pid could be found the window's class (X11 ``WM_CLASS``) stands in for it:
a stated fallback, weaker because any program may set any class, shown by ``mamori agent apps``. The title is tried as the OS reports it and in NFKC form, so a rule
written ``Salesforce`` also matches a title in full-width letters ``Ｓａｌｅｓｆｏｒｃｅ``.

Only the rule name leaves this module's callers (events, status); titles never do.
"""

from __future__ import annotations

import fnmatch
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from agent.platform.base import Window
from policy.model import CustomerApp

# Built-in app families (policy.model.APP_FAMILIES): executable names as each OS reports them (Linux: the
# process name, e.g. Debian's "chromium" and "firefox-esr"; Windows: "chrome.exe" with ".exe" optional; macOS:
# the application name) and the X11 WM_CLASS classes used when a window's pid is unknown.
FAMILIES: dict[str, tuple[str, ...]] = {
    "browsers": (
        # Chrome / Chromium
        "chrome", "google-chrome", "google-chrome-stable", "chromium", "chromium-browser", "google chrome",
        # Edge
        "msedge", "microsoft-edge", "microsoft edge",
        # Firefox (Debian ships firefox-esr)
        "firefox", "firefox-esr", "firefox-bin", "firefox.real",
        # Brave, Vivaldi, Opera
        "brave", "brave-browser", "brave browser", "vivaldi", "vivaldi-bin", "opera",
        # Safari (macOS)
        "safari",
    ),
    "spreadsheets": (
        "excel", "microsoft excel", "soffice", "soffice.bin", "scalc", "localc", "libreoffice",
        "libreoffice-calc", "numbers",
    ),
}  # fmt: skip


@dataclass(frozen=True)
class Match:
    window: Window
    rule: str  # the rule name: the only thing reported about the window


def _normalize_process(name: str) -> str:
    name = name.strip().lower()
    # Windows reports "EXCEL.EXE", a policy may say "excel"; macOS reports app names like "Microsoft Excel".
    return name.removesuffix(".exe")


def process_matches(pattern: str, process_name: str) -> bool:
    """Case-insensitive glob match of one rule pattern against a process name, ``.exe`` optional."""
    if not process_name:
        return False
    return fnmatch.fnmatchcase(_normalize_process(process_name), _normalize_process(pattern))


def title_matches(rule: CustomerApp, title: str) -> bool:
    if rule.title is None:
        return True
    if rule.title.search(title):
        return True
    folded = unicodedata.normalize("NFKC", title)
    return folded != title and rule.title.search(folded) is not None


def identity(window: Window) -> tuple[str, str]:
    """The name a window's process is matched by and where it came from: ("process", name) when the backend
    found the window's process, else ("wm_class", class) as the stated fallback, else ("", "")."""
    if window.process_name:
        return "process", window.process_name
    if window.wm_class:
        return "wm_class", window.wm_class
    return "", ""


def rule_patterns(rule: CustomerApp) -> tuple[str, ...]:
    """The rule's process patterns with its families expanded."""
    out = list(rule.processes)
    for family in rule.families:
        out.extend(FAMILIES.get(family, ()))
    return tuple(out)


def process_rule_matches(rule: CustomerApp, window: Window) -> bool:
    """The process half of a rule: any of its patterns (families included) matches the window's identity."""
    patterns = rule_patterns(rule)
    if not patterns:
        return True
    _, name = identity(window)
    return any(process_matches(p, name) for p in patterns)


def rule_matches(rule: CustomerApp, window: Window) -> bool:
    return process_rule_matches(rule, window) and title_matches(rule, window.title)


def coverable(window: Window) -> bool:
    """Minimized or empty windows show nothing and need no cover."""
    return not window.minimized and window.rect.width > 0 and window.rect.height > 0


def match_windows(rules: Sequence[CustomerApp], windows: Iterable[Window]) -> list[Match]:
    """Every visible customer-data window with the first rule that matched it, in the windows' order."""
    out: list[Match] = []
    for window in windows:
        if not coverable(window):
            continue
        for rule in rules:
            if rule_matches(rule, window):
                out.append(Match(window, rule.name))
                break
    return out


@dataclass(frozen=True)
class RuleVerdict:
    """Why one rule does or does not match one window (for ``mamori agent apps``; shown locally only).

    ``why``: "matched"; "process" (its processes/families do not include the window's process); "title" (the
    process matches, the title does not); "hidden" (minimized or empty: nothing to cover).
    """

    rule: str
    why: str


def explain(rules: Sequence[CustomerApp], window: Window) -> list[RuleVerdict]:
    """Every rule's verdict on ``window``, in the rules' order (the first "matched" is the one that covers)."""
    out: list[RuleVerdict] = []
    for rule in rules:
        if not process_rule_matches(rule, window):
            out.append(RuleVerdict(rule.name, "process"))
        elif not title_matches(rule, window.title):
            out.append(RuleVerdict(rule.name, "title"))
        elif not coverable(window):
            out.append(RuleVerdict(rule.name, "hidden"))
        else:
            out.append(RuleVerdict(rule.name, "matched"))
    return out
