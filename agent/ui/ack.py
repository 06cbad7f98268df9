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
from dataclasses import dataclass
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
                    out[pid] = Acknowledgement(
                        pid, int(entry["version"]), datetime.fromisoformat(entry["time"])
                    )
                except (KeyError, TypeError, ValueError):
                    continue
        return out

    def record(self, ack: Acknowledgement) -> None:
        with self._lock:
            acks = self._load()
            acks[ack.policy_id] = ack
            data = {a.policy_id: {"version": a.version, "time": a.time.isoformat()} for a in acks.values()}
            try:
                atomic_write(self.path, json.dumps(data, indent=1, sort_keys=True).encode("utf-8"))
            except StoreError as err:
                raise AckStoreError(self.path, err.reason) from err


def policy_summary(t: Translate, policy: Policy) -> list[str]:
    """The policy in a few plain sentences in the translator's language (what the worker agrees to)."""
    p = policy.presence
    lines = [
        t(
            "ack.summary.presence",
            warn=_human(t, p.warn_after),
            protect=_human(t, p.protect_after),
            lock=_human(t, p.lock_after),
        )
    ]
    if policy.customer_apps:
        lines.append(t("ack.summary.apps", apps=", ".join(a.name for a in policy.customer_apps)))
    vpn = policy.network.vpn
    if vpn.mode != "off" and vpn.required_for_customer_apps:
        lines.append(t("ack.summary.vpn"))
    wifi = policy.network.wifi
    if wifi.mode != "off" and wifi.untrusted != "allow":
        lines.append(t("ack.summary.wifi", action=t(f"ack.wifi_action.{wifi.untrusted}")))
    if policy.screen_share.protect:
        lines.append(t("ack.summary.share"))
    d = policy.device
    if any(c.mode != "off" for c in (d.disk_encryption, d.firewall, d.screen_lock)):
        lines.append(t("ack.summary.device"))
    if policy.worker.allow_pause:
        lines.append(t("ack.summary.pause", minutes=int(policy.worker.pause_max // 60)))
    lines.append(t("ack.summary.privacy"))
    return lines


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
        policy = self.current
        if policy is None or policy.id != policy_id or policy.version != version:
            logger.info("ignoring acknowledgement of %s v%s: not the policy in effect", policy_id, version)
            return None
        ack = Acknowledgement(policy_id, version, self._clock.now())
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


def show_ack_dialog(
    master: tk.Misc,
    t: Translate,
    policy: Policy,
    on_ack: Callable[[str, int], None],
    language: str | None = None,
) -> tk.Toplevel:
    """Build the acknowledgement dialog as a Toplevel of ``master`` (call on the Tk thread)."""
    import tkinter as tk
    from tkinter import ttk

    from agent.ui.statuswindow import fresh_toplevel
    from agent.ui.tkfonts import ui_font

    lang = str(language or getattr(t, "language", "en"))
    # One dialog at a time: a new policy or a second menu click replaces it instead of stacking another.
    win = fresh_toplevel(master, "ack")
    win.title(t("ack.title"))
    win.wm_attributes("-topmost", True)
    frame = ttk.Frame(win, padding=16)
    frame.pack(fill="both", expand=True)
    font = ui_font(win, 12)
    bold = ui_font(win, 14, bold=True)
    tk.Label(frame, text=t("ack.title"), font=bold, anchor="w").pack(fill="x")
    tk.Label(frame, text=t("ack.heading", id=policy.id, version=policy.version), font=font, anchor="w").pack(
        fill="x", pady=(0, 8)
    )
    text = policy.acknowledgement.text.get(lang)
    if text:
        tk.Message(frame, text=text, font=font, width=560, anchor="w").pack(fill="x", pady=(0, 8))
    tk.Label(frame, text=t("ack.summary_heading"), font=bold, anchor="w").pack(fill="x")
    for line in policy_summary(t, policy):
        tk.Message(frame, text="• " + line, font=font, width=560, anchor="w").pack(fill="x")
    if policy.acknowledgement.cover_until_acknowledged:
        tk.Label(frame, text=t("ack.cover_note"), font=font, fg="#a00000", anchor="w").pack(
            fill="x", pady=(8, 0)
        )
    buttons = ttk.Frame(frame)
    buttons.pack(fill="x", pady=(12, 0))

    def accept() -> None:
        on_ack(policy.id, policy.version)
        win.destroy()

    ok = tk.Button(buttons, text=t("ack.button"), font=font, command=accept, name="ack_button")
    ok.pack(side="right")
    tk.Button(buttons, text=t("ack.later"), font=font, command=win.destroy, name="later_button").pack(
        side="right", padx=8
    )
    ok.focus_set()
    return win
