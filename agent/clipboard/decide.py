"""Whether a selection holds customer data (pure: the owner, the open windows and the rules in, a rule out).

The same rules that decide covers decide this (agent/decide/match.py): the selection's owning process is
customer data when one of its windows matches a ``[[customer_apps]]`` rule (process and title, minimized
windows included: a minimized ledger still copied the number). An owner with no window the backend knows of
(the customer app has closed its windows, or the OS names only the process) is matched by its process alone,
ignoring the rule's title: the safe side, a copy from such a process is treated as customer data (a rule that
names no process cannot judge such an owner).

Clipboard managers (:data:`CLIPBOARD_MANAGERS`) take the content over from the app that copied it (X11's
``CLIPBOARD_MANAGER`` hand-over when an app exits, or managers that re-own every copy). A manager that took
over from a customer-data owner holds customer data under that owner's rule (:func:`inherited_rule`).
"""

from __future__ import annotations

from collections.abc import Sequence

from agent.clipboard.base import Owner
from agent.decide.match import identity, process_matches, rule_matches, rule_patterns
from agent.platform.base import Rect, Window
from policy.model import CustomerApp

# Process names of clipboard managers that keep a copy and may become the owner after the app that copied.
CLIPBOARD_MANAGERS = (
    "xfce4-clipman", "clipit", "parcellite", "diodon", "copyq", "klipper", "plasmashell", "gpaste-daemon",
    "greenclip", "clipmenud", "xclipboard", "glipper", "gnome-shell",
)  # fmt: skip

# The reason codes of the cover reasons that clear customer data from the clipboard (agent/decide/cover.py):
# away (idle or step away), a screen share, a blocking posture check and a lock that failed. A pending
# acknowledgement covers windows but is not a risk to the clipboard.
CLEARING_REASONS = ("lock_failed", "posture", "share", "step_away", "away")


def clearing_reason(active: Sequence[str]) -> str | None:
    """The first active cover reason that clears the clipboard, as its event code; None when none is active."""
    return next((r for r in CLEARING_REASONS if r in active), None)


def owner_rule(owner: Owner, windows: Sequence[Window], rules: Sequence[CustomerApp]) -> str | None:
    """The name of the rule that makes ``owner``'s content customer data, or None."""
    if owner.ours or owner.empty:
        return None
    mine = [w for w in windows if w.id in owner.window_ids or (owner.pid is not None and w.pid == owner.pid)]
    for rule in rules:
        if any(rule_matches(rule, w) for w in mine):
            return rule.name
    if mine:
        return None
    # No window to read a title from: the process alone decides. A rule that names no process (a title-only
    # rule) cannot judge a windowless owner and does not match it.
    stand_in = Window(0, "", owner.pid, owner.process_name, Rect(0, 0, 0, 0))
    _, name = identity(stand_in)
    for rule in rules:
        if any(process_matches(p, name) for p in rule_patterns(rule)):
            return rule.name
    return None


def is_manager(owner: Owner) -> bool:
    name = owner.process_name.lower()
    return any(process_matches(m, name) for m in CLIPBOARD_MANAGERS)


def inherited_rule(owner: Owner, previous: Owner | None, previous_rule: str | None) -> str | None:
    """A clipboard manager that took the selection over from a customer-data owner holds that owner's data."""
    if previous is None or previous_rule is None or not is_manager(owner):
        return None
    return previous_rule if previous.serial != owner.serial else None


def selection_rule(
    owner: Owner,
    windows: Sequence[Window],
    rules: Sequence[CustomerApp],
    seen: Owner | None = None,
    seen_rule: str | None = None,
) -> str | None:
    """The rule of ``owner``'s content: its own, else, for a clipboard manager, that of the app it took the
    content from (``owner.previous`` as the backend saw it, else ``seen``, the last owner the guard saw)."""
    rule = owner_rule(owner, windows, rules)
    if rule is not None or not is_manager(owner):
        return rule
    if owner.previous is not None:
        return owner_rule(owner.previous, windows, rules)
    return inherited_rule(owner, seen, seen_rule)
