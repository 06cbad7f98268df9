"""Policy acknowledgement (SPEC.md, Policy ``[acknowledgement]``; issue 7 item 4).

Three layers, kept apart:

- pure: :func:`needs_ack` decides from the policy id/version/requirement and the stored acknowledgements;
  :func:`policy_summary` turns a policy into a few lines in the worker's language;
- disk: :class:`AckStore` keeps the acknowledgements in ``state_dir/acknowledgements.json`` (atomic replace);
- flow: :class:`AckFlow` covers customer windows until acknowledged (when the policy says so), records the
  acknowledgement and publishes ``POLICY_ACKNOWLEDGED`` with policy id, version and time;
- UI: :func:`show_ack_dialog` builds the Tk dialog (on the Tk thread of :class:`agent.ui.tkhost.TkHost`).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from agent.report.stream import AgentEvent, EventStream, Kind
from core.clock import Clock
from core.errors import MamoriError
from policy.errors import StoreError
from policy.model import Policy
from policy.store import atomic_write

if TYPE_CHECKING:
    import tkinter as tk

logger = logging.getLogger(__name__)

ACK_FILE = "acknowledgements.json"
Translate = Callable[..., str]


class AckStoreError(MamoriError):
    """The acknowledgement file cannot be read or written."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        super().__init__(f"{path}: {reason}; check that the agent's state_dir is writable")


@dataclass(frozen=True)
class Acknowledgement:
    policy_id: str
    version: int
    time: datetime
    # What the worker agreed to, language-neutral (summary_facts): the next version shows what changed.
    facts: Mapping[str, str] = field(default_factory=dict)


def needs_ack(policy_id: str, version: int, required: bool, acks: Mapping[str, Acknowledgement]) -> bool:
    """True when the policy requires acknowledgement and this id has no acknowledgement of this version or later.

    Each new version needs a new acknowledgement (SPEC.md: "shown on each new version"); an acknowledgement of
    a later version (after a rollback the store refused anyway) also counts.
    """
    if not required:
        return False
    ack = acks.get(policy_id)
    return ack is None or ack.version < version


class AckStore:
    """Acknowledgements by policy id, in ``state_dir/acknowledgements.json``."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / ACK_FILE
        self._lock = threading.Lock()

    def load(self) -> dict[str, Acknowledgement]:
        with self._lock:
            return self._load()

    def _load(self) -> dict[str, Acknowledgement]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:
            # A corrupt file must not be mistaken for "acknowledged": treat as none and ask again.
            logger.warning("acknowledgement file unreadable, asking again: %s", err)
            return {}
        out: dict[str, Acknowledgement] = {}
        if isinstance(raw, dict):
            for pid, entry in raw.items():
                try:
                    facts = entry.get("facts", {})
                    out[pid] = Acknowledgement(
                        pid,
                        int(entry["version"]),
                        datetime.fromisoformat(entry["time"]),
                        {str(k): str(v) for k, v in facts.items()} if isinstance(facts, dict) else {},
                    )
                except (KeyError, TypeError, ValueError, AttributeError):
                    continue
        return out

    def record(self, ack: Acknowledgement) -> None:
        with self._lock:
            acks = self._load()
            acks[ack.policy_id] = ack
            data = {
                a.policy_id: {"version": a.version, "time": a.time.isoformat(), "facts": dict(a.facts)}
                for a in acks.values()
            }
            try:
                atomic_write(self.path, json.dumps(data, indent=1, sort_keys=True).encode("utf-8"))
            except StoreError as err:
                raise AckStoreError(self.path, err.reason) from err


def policy_title(policy: Policy, language: str) -> str:
    """The policy's display name in the worker's language (its ``title``), else its id."""
    return policy.title.get(language) or policy.id


def summary_items(t: Translate, policy: Policy) -> list[tuple[str, str, str]]:
    """(fact key, language-neutral value, sentence in the translator's language) for each point the worker
    agrees to. The values are stored with the acknowledgement, so the next version can say what changed."""
    p = policy.presence
    items = [
        (
            "presence",
            f"{p.warn_after:g}/{p.protect_after:g}/{p.lock_after:g}",
            t(
                "ack.summary.presence",
                warn=_human(t, p.warn_after),
                protect=_human(t, p.protect_after),
                lock=_human(t, p.lock_after),
            ),
        )
    ]
    if policy.customer_apps:
        names = ", ".join(a.name for a in policy.customer_apps)
        items.append(("apps", names, t("ack.summary.apps", apps=names)))
    vpn = policy.network.vpn
    if vpn.mode != "off" and vpn.required_for_customer_apps:
        # Only "block" covers the windows; "warn" only tells the worker (the text must not claim more).
        key = "ack.summary.vpn" if vpn.mode == "block" else "ack.summary.vpn_warn"
        items.append(("vpn", vpn.mode, t(key)))
    wifi = policy.network.wifi
    if wifi.mode != "off" and wifi.untrusted != "allow":
        action = t(f"ack.wifi_action.{wifi.untrusted}")
        items.append(("wifi", f"{wifi.mode}/{wifi.untrusted}", t("ack.summary.wifi", action=action)))
    if policy.screen_share.protect:
        items.append(("share", "on", t("ack.summary.share")))
    d = policy.device
    if any(c.mode != "off" for c in (d.disk_encryption, d.firewall, d.screen_lock)):
        modes = "/".join(c.mode for c in (d.disk_encryption, d.firewall, d.screen_lock))
        items.append(("device", modes, t("ack.summary.device")))
    if policy.worker.allow_pause:
        minutes = int(policy.worker.pause_max // 60)
        items.append(("pause", str(minutes), t("ack.summary.pause", minutes=minutes)))
    items.append(("privacy", "on", t("ack.summary.privacy")))
    return items


def summary_facts(t: Translate, policy: Policy) -> dict[str, str]:
    return {key: value for key, value, _ in summary_items(t, policy)}


def policy_summary(t: Translate, policy: Policy) -> list[str]:
    """The policy in a few plain sentences in the translator's language (what the worker agrees to)."""
    return [line for _, _, line in summary_items(t, policy)]


def what_changed(t: Translate, policy: Policy, previous: Mapping[str, str]) -> list[str]:
    """The sentences of this policy that differ from what the worker last acknowledged, and what was dropped."""
    items = summary_items(t, policy)
    current = {key for key, _, _ in items}
    changed = [line for key, value, line in items if previous.get(key) != value]
    removed = [t("ack.changed.removed", what=t(f"ack.fact.{key}")) for key in previous if key not in current]
    return changed + removed


def _human(t: Translate, seconds: float) -> str:
    # "5m" reads as "5 meters" to some; spell minutes/seconds in the worker's language.
    total = int(seconds)
    minutes, secs = divmod(total, 60)
    ja = getattr(t, "language", "en") == "ja"
    parts = []
    if minutes:
        parts.append(f"{minutes} 分" if ja else f"{minutes} min")
    if secs or not minutes:
        parts.append(f"{secs} 秒" if ja else f"{secs} s")
    return " ".join(parts)


class AckFlow:
    """Glue between the policy, the store, the cover and the event stream.

    ``set_cover(active)`` is the runtime's ``set_cover_reason("ack", active, "cover.ack")``; ``show_dialog``
    asks the UI to show the dialog (the tray's ``show_ack``), ``None`` when there is no UI.
    """

    def __init__(
        self,
        store: AckStore,
        stream: EventStream,
        clock: Clock,
        set_cover: Callable[[bool], None],
        show_dialog: Callable[[Policy], None] | None = None,
    ) -> None:
        self._store = store
        self._stream = stream
        self._clock = clock
        self._set_cover = set_cover
        self._show_dialog = show_dialog
        self._lock = threading.Lock()
        self._current: Policy | None = None

    @property
    def current(self) -> Policy | None:
        with self._lock:
            return self._current

    def pending(self) -> bool:
        policy = self.current
        if policy is None:
            return False
        return needs_ack(policy.id, policy.version, policy.acknowledgement.required, self._store.load())

    def acknowledged(self, policy_id: str) -> Acknowledgement | None:
        """The worker's last acknowledgement of ``policy_id`` (any version), for "what changed"."""
        return self._store.load().get(policy_id)

    def status(self) -> dict[str, object]:
        """For ``Runtime.add_status_provider("ack", flow.status)``: the tray shows "please acknowledge"."""
        policy = self.current
        if policy is None:
            return {"pending": False}
        return {"policy_id": policy.id, "version": policy.version, "pending": self.pending()}

    def on_policy(self, policy: Policy) -> bool:
        """A policy is now in effect. Returns whether the worker must acknowledge it (dialog asked, cover set)."""
        with self._lock:
            self._current = policy
        required = self.pending()
        self._set_cover(required and policy.acknowledgement.cover_until_acknowledged)
        if required and self._show_dialog is not None:
            self._show_dialog(policy)
        return required

    def acknowledge(self, policy_id: str, version: int) -> Acknowledgement | None:
        """Record the worker's acknowledgement of *this* id and version; stale answers are ignored (None)."""
        from agent.i18n import Translator

        policy = self.current
        if policy is None or policy.id != policy_id or policy.version != version:
            logger.info("ignoring acknowledgement of %s v%s: not the policy in effect", policy_id, version)
            return None
        facts = summary_facts(Translator("en"), policy)  # the values are language-neutral
        ack = Acknowledgement(policy_id, version, self._clock.now(), facts)
        try:
            self._store.record(ack)
        except AckStoreError as err:
            # The worker did acknowledge: report it and lift the cover. Only the memory of it is lost, so the
            # dialog comes back after a restart; an exception here would land in the UI thread instead.
            logger.error("acknowledgement not saved: %s", err)
        self._stream.publish(
            AgentEvent(
                Kind.POLICY_ACKNOWLEDGED,
                ack.time,
                # The event's time is the acknowledgement time; only allow-listed fields reach the server.
                {"policy_id": policy_id, "version": version},
            )
        )
        self._set_cover(False)
        return ack


DIALOG_TEXT_WIDTH = 560  # pixels of text per line before the dialog is fitted to the monitor
MONITOR_MARGIN = 24


def show_ack_dialog(
    master: tk.Misc,
    t: Translate,
    policy: Policy,
    on_ack: Callable[[str, int], None],
    language: str | None = None,
    *,
    previous: Acknowledgement | None = None,
) -> tk.Toplevel:
    """Build the acknowledgement dialog as a Toplevel of ``master`` (call on the Tk thread).

    Every text goes through the one renderer (agent.ui.text): paragraphs reflowed, never broken inside a
    number and its unit. ``previous`` (the worker's acknowledgement of an earlier version) adds what changed.
    The dialog is placed inside the monitor under the pointer, scrolling when it is taller.
    """
    import tkinter as tk
    from tkinter import ttk

    from agent.ui.statuswindow import fresh_toplevel
    from agent.ui.text import render, render_list
    from agent.ui.tkfonts import ui_font

    lang = str(language or getattr(t, "language", "en"))
    # One dialog at a time: a new policy or a second menu click replaces it instead of stacking another.
    win = fresh_toplevel(master, "ack")
    win.title(t("ack.title"))
    win.wm_attributes("-topmost", True)
    import tkinter.font as tkfont

    font = ui_font(win, 12)
    bold = ui_font(win, 14, bold=True)
    monitor = monitor_under_pointer(win)
    width = min(DIALOG_TEXT_WIDTH, monitor[2] - 2 * MONITOR_MARGIN - 48)
    measure = tkfont.Font(win, font=font).measure
    measure_bold = tkfont.Font(win, font=bold).measure

    buttons = ttk.Frame(win, padding=(16, 8, 16, 16))
    buttons.pack(side="bottom", fill="x")
    canvas = tk.Canvas(win, highlightthickness=0)
    scroll = ttk.Scrollbar(win, orient="vertical", command=canvas.yview)
    frame = ttk.Frame(canvas, padding=(16, 16, 16, 0))
    canvas.create_window((0, 0), window=frame, anchor="nw")
    canvas.configure(yscrollcommand=scroll.set)

    def label(text: str, use: object = font, **pack: object) -> None:
        tk.Label(frame, text=text, font=use, anchor="w", justify="left").pack(fill="x", **pack)  # type: ignore[arg-type]

    label(render(t("ack.title"), width, measure_bold), bold)
    heading = t("ack.heading", title=policy_title(policy, lang), version=policy.version)
    label(render(heading, width, measure), pady=(0, 8))
    text = policy.acknowledgement.text.get(lang)
    if text:
        label(render(text, width, measure), pady=(0, 8))
    if previous is not None and previous.version < policy.version:
        changes = what_changed(t, policy, previous.facts) if previous.facts else []
        label(render(t("ack.changed.heading", version=previous.version), width, measure_bold), bold)
        body = render_list(changes, width, measure) if changes else t("ack.changed.none")
        label(body if changes else render(body, width, measure), pady=(0, 8))
    label(render(t("ack.summary_heading"), width, measure_bold), bold)
    label(render_list(policy_summary(t, policy), width, measure))
    if policy.acknowledgement.cover_until_acknowledged:
        tk.Label(
            frame,
            text=render(t("ack.cover_note"), width, measure),
            font=font,
            fg="#a00000",
            anchor="w",
            justify="left",
        ).pack(fill="x", pady=(8, 0))

    def accept() -> None:
        on_ack(policy.id, policy.version)
        win.destroy()

    ok = tk.Button(buttons, text=t("ack.button"), font=font, command=accept, name="ack_button")
    ok.pack(side="right")
    tk.Button(buttons, text=t("ack.later"), font=font, command=win.destroy, name="later_button").pack(
        side="right", padx=8
    )
    frame.update_idletasks()
    content_w, content_h = frame.winfo_reqwidth(), frame.winfo_reqheight()
    buttons_h = buttons.winfo_reqheight()
    x0, y0, mon_w, mon_h = monitor
    room = mon_h - 2 * MONITOR_MARGIN - buttons_h - 40  # 40: the title bar the window manager adds
    view_h = min(content_h, max(120, room))
    canvas.configure(width=content_w, height=view_h, scrollregion=(0, 0, content_w, content_h))
    if content_h > view_h:
        scroll.pack(side="right", fill="y")
    canvas.pack(side="top", fill="both", expand=True)
    win.update_idletasks()
    w, h = win.winfo_reqwidth(), win.winfo_reqheight()
    x = x0 + max(MONITOR_MARGIN, (mon_w - w) // 2)
    y = y0 + max(MONITOR_MARGIN, (mon_h - h - 40) // 2)
    win.geometry(f"+{x}+{y}")
    ok.focus_set()
    return win


def monitor_under_pointer(win: tk.Misc) -> tuple[int, int, int, int]:
    """(x, y, width, height) of the monitor under the pointer; the whole screen when monitors are unknown."""
    px, py = win.winfo_pointerxy()
    for x, y, w, h in _monitors(win):
        if x <= px < x + w and y <= py < y + h:
            return x, y, w, h
    return 0, 0, win.winfo_screenwidth(), win.winfo_screenheight()


def _monitors(win: tk.Misc) -> list[tuple[int, int, int, int]]:
    """The monitors of an X display (RandR via xrandr-less Xlib query); empty elsewhere or on failure."""
    try:
        from Xlib import display as xdisplay
        from Xlib.ext import randr
    except ImportError:
        return []
    try:
        d = xdisplay.Display(win.winfo_screen())
    except Exception:
        return []
    try:
        if not d.has_extension("RANDR"):
            return []
        monitors = randr.get_monitors(d.screen().root, True).monitors
        return [(m.x, m.y, m.width_in_pixels, m.height_in_pixels) for m in monitors]
    except Exception:
        return []
    finally:
        d.close()
