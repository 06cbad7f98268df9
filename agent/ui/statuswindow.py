"""Tk windows of the tray: the status window (the menu-less tray's fallback), pause dialog, text viewers.

Every builder here runs on the Tk thread (:class:`agent.ui.tkhost.TkHost`) and takes the ``master`` it gives.
The status window offers exactly the tray menu's actions, through the same :class:`Actions`, so a worker on a
tray without menus (pystray's X11 backend) loses nothing.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable, Mapping
from tkinter import ttk
from typing import Any, Protocol

from agent.ui.icons import FILL, icon_image
from agent.ui.tkfonts import ui_font
from agent.ui.view import StatusView, build_view

Translate = Callable[..., str]
REFRESH_MS = 1000
STATUS_TEXT_WIDTH = 520  # pixels of text per status line before it wraps
PAUSE_REASONS = ("meeting", "presentation", "support", "other")


class Actions(Protocol):
    """What the worker can do; implemented by :class:`agent.ui.tray.Tray`."""

    def step_away(self) -> None: ...
    def show_reported(self) -> None: ...
    def show_policy(self) -> None: ...
    def show_ack(self) -> None: ...
    def pause(self, minutes: int, reason: str) -> None: ...
    def resume(self) -> None: ...
    def quit(self) -> None: ...


class StatusWindow:
    """The status window. One at a time; :meth:`present` raises it if it is already open."""

    def __init__(
        self,
        master: tk.Misc,
        t: Translate,
        status_provider: Callable[[], Mapping[str, Any]],
        actions: Actions,
    ) -> None:
        self._t = t
        self._status = status_provider
        self._actions = actions
        self._master = master
        self.win: tk.Toplevel | None = None
        self._photo: Any = None

    def present(self) -> None:
        if self.win is not None and self.win.winfo_exists():
            self.win.deiconify()
            self.win.lift()
            return
        self._build()

    def _build(self) -> None:
        t = self._t
        win = tk.Toplevel(self._master, name="status")
        win.title(t("status.title"))
        win.wm_attributes("-topmost", True)
        win.protocol("WM_DELETE_WINDOW", self.close)
        self.win = win
        font = ui_font(win, 12)
        self._font = font
        head = ttk.Frame(win, padding=(12, 12, 12, 0))
        head.pack(fill="x")
        self._icon_label = tk.Label(head)
        self._icon_label.pack(side="left")
        self._state_label = tk.Label(head, font=ui_font(win, 14, bold=True), anchor="w")
        self._state_label.pack(side="left", padx=8)
        self._lines = tk.Label(win, font=font, justify="left", anchor="w", padx=12, pady=8)
        self._lines.pack(fill="x")
        self._buttons = ttk.Frame(win, padding=(12, 0, 12, 12))
        self._buttons.pack(fill="x")
        self._button_key: tuple[bool, bool, bool, bool] | None = None
        self.refresh()

    def _rebuild_buttons(self, view: StatusView) -> None:
        key = (view.permissions.allow_pause, view.paused, view.permissions.allow_quit, view.ack_needed)
        if key == self._button_key:
            return
        self._button_key = key
        for child in self._buttons.winfo_children():
            child.destroy()
        t, a = self._t, self._actions
        entries: list[tuple[str, str, Callable[[], None]]] = [
            ("step_away", t("tray.menu.step_away"), a.step_away),
            ("reported", t("tray.menu.reported"), a.show_reported),
            ("view_policy", t("tray.menu.view_policy"), a.show_policy),
            ("acknowledge", t("tray.menu.acknowledge"), a.show_ack),
        ]
        if view.paused:
            entries.append(("resume", t("tray.menu.resume"), a.resume))
        elif view.permissions.allow_pause:
            entries.append(("pause", t("tray.menu.pause"), self._ask_pause))
        if view.permissions.allow_quit:
            entries.append(("quit", t("tray.menu.quit"), a.quit))
        entries.append(("close", t("status.close"), self.close))
        for name, text, command in entries:
            tk.Button(self._buttons, name=name, text=text, font=self._font, command=command, anchor="w").pack(
                fill="x", pady=2
            )

    def _ask_pause(self) -> None:
        view = build_view(self._t, self._status())
        if self.win is not None:
            show_pause_dialog(self.win, self._t, view.permissions.pause_max_minutes, self._actions.pause)

    def refresh(self) -> None:
        win = self.win
        if win is None or not win.winfo_exists():
            return
        view = build_view(self._t, self._status())
        self._photo = _photo(win, view)
        self._icon_label.configure(image=self._photo)
        rgb = FILL[view.state]
        self._state_label.configure(
            text=self._t(f"tray.state.{view.state.value}"), fg="#{:02x}{:02x}{:02x}".format(*rgb)
        )
        self._lines.configure(text=self._wrapped(view.lines))
        self._rebuild_buttons(view)
        win.after(REFRESH_MS, self.refresh)

    def _wrapped(self, lines: tuple[str, ...]) -> str:
        """Each status line through the one renderer (agent.ui.text); a fix line ("  → ...") hangs."""
        import tkinter.font as tkfont

        from agent.ui.text import render

        measure = tkfont.Font(self.win, font=self._font).measure
        out = []
        for line in lines:
            stripped = line.lstrip(" ")
            indent = line[: len(line) - len(stripped)]
            if stripped.startswith("→ "):
                out.append(render(stripped[2:], STATUS_TEXT_WIDTH, measure, bullet=indent + "→ "))
            else:
                out.append(render(line, STATUS_TEXT_WIDTH, measure))
        return "\n".join(out)

    def close(self) -> None:
        if self.win is not None and self.win.winfo_exists():
            self.win.destroy()
        self.win = None


def _photo(win: tk.Misc, view: StatusView) -> Any:
    from PIL import ImageTk

    return ImageTk.PhotoImage(icon_image(view.state, "light", 48), master=win)


def show_pause_dialog(
    master: tk.Misc, t: Translate, max_minutes: int, on_pause: Callable[[int, str], None]
) -> tk.Toplevel:
    """Ask for a reason (reported) and a duration no longer than the policy's maximum."""
    win = fresh_toplevel(master, "pause")
    win.title(t("pause.title"))
    win.wm_attributes("-topmost", True)
    font = ui_font(win, 12)
    frame = ttk.Frame(win, padding=12)
    frame.pack(fill="both", expand=True)
    tk.Label(frame, text=t("pause.reason_label"), font=font, anchor="w").pack(fill="x")
    reason = tk.StringVar(win, PAUSE_REASONS[0])
    for code in PAUSE_REASONS:
        tk.Radiobutton(
            frame, text=t(f"pause.reason.{code}"), value=code, variable=reason, font=font, anchor="w"
        ).pack(fill="x")
    tk.Label(frame, text=t("pause.minutes_label", max=max_minutes), font=font, anchor="w").pack(
        fill="x", pady=(8, 0)
    )
    minutes = tk.IntVar(win, min(15, max_minutes))
    tk.Spinbox(frame, from_=1, to=max_minutes, textvariable=minutes, font=font, width=6).pack(anchor="w")
    buttons = ttk.Frame(frame)
    buttons.pack(fill="x", pady=(12, 0))

    def ok() -> None:
        try:
            value = int(minutes.get())
        except (tk.TclError, ValueError):
            value = max_minutes
        on_pause(value, reason.get())  # Tray.pause clamps to the policy's maximum as it is *now*
        win.destroy()

    tk.Button(buttons, name="ok", text=t("pause.ok"), font=font, command=ok).pack(side="right")
    win.bind("<Escape>", lambda _e: win.destroy())
    tk.Button(buttons, name="cancel", text=t("pause.cancel"), font=font, command=win.destroy).pack(
        side="right", padx=8
    )
    return win


def show_tooltip_window(master: tk.Misc, text: str, hide_after_ms: int) -> tk.Toplevel:
    """A tooltip near the pointer, kept inside the screen; it goes after ``hide_after_ms``."""
    win = fresh_toplevel(master, "tooltip")
    win.wm_overrideredirect(True)
    win.wm_attributes("-topmost", True)
    tk.Label(
        win,
        text=text,
        font=ui_font(win, 11),
        justify="left",
        anchor="w",
        bg="#ffffe1",
        fg="#000000",
        relief="solid",
        borderwidth=1,
        padx=6,
        pady=4,
    ).pack()
    win.update_idletasks()
    px, py = win.winfo_pointerxy()
    w, h = win.winfo_reqwidth(), win.winfo_reqheight()
    x = max(0, min(px + 12, win.winfo_screenwidth() - w))
    y = py + 16 if py + 16 + h <= win.winfo_screenheight() else max(0, py - 16 - h)
    win.geometry(f"+{x}+{y}")

    def hide() -> None:
        if win.winfo_exists():
            win.destroy()

    win.after(hide_after_ms, hide)
    return win


def show_popup_menu(
    master: tk.Misc, entries: list[tuple[str, Callable[[], None] | None]], x: int, y: int
) -> tk.Menu:
    """A popup menu at (x, y): ("-", None) is a separator, (text, None) a line of information."""
    old = master.children.get("traymenu")
    if old is not None:
        old.destroy()
    menu = tk.Menu(master, name="traymenu", tearoff=False, font=ui_font(master, 11))
    for text, action in entries:
        if text == "-":
            menu.add_separator()
        elif action is None:
            menu.add_command(label=text, state="disabled")
        else:
            menu.add_command(label=text, command=action)
    try:
        menu.tk_popup(x, y)
    finally:
        menu.grab_release()
    return menu


def fresh_toplevel(master: tk.Misc, name: str) -> tk.Toplevel:
    """A new Toplevel named ``name``, replacing one still open (e.g. behind other windows).

    Tk names are unique per parent: a second ``Toplevel(name=...)`` raised TclError, so a second click on the
    same menu item did nothing. The replacement also shows fresh content (the latest reported events).
    """
    old = master.children.get(name)
    if old is not None:
        old.destroy()
    return tk.Toplevel(master, name=name)


def show_text_window(
    master: tk.Misc, title: str, text: str, name: str, raw: tuple[str, str, str] | None = None
) -> tk.Toplevel:
    """A read-only, scrollable text viewer (What is reported, View policy).

    ``raw`` = (button label, label to come back, the other text): one click shows the other text (the events
    exactly as sent, as JSON), a second click the table again.
    """
    win = fresh_toplevel(master, name)
    win.title(title)
    win.wm_attributes("-topmost", True)
    bottom = ttk.Frame(win)
    bottom.pack(side="bottom", fill="x", pady=4)
    tk.Button(bottom, name="ok", text="OK", command=win.destroy).pack(side="right", padx=8)
    win.bind("<Escape>", lambda _e: win.destroy())
    box = tk.Text(win, name="text", width=100, height=24, wrap="none", font=ui_font(win, 11))
    scroll = ttk.Scrollbar(win, command=box.yview)
    box.configure(yscrollcommand=scroll.set)
    scroll.pack(side="right", fill="y")
    box.pack(side="left", fill="both", expand=True)

    def show(content: str) -> None:
        box.configure(state="normal")
        box.delete("1.0", "end")
        box.insert("1.0", content)
        box.configure(state="disabled")

    show(text)
    if raw is not None:
        label, back, other = raw
        showing = {"raw": False}

        def toggle() -> None:
            showing["raw"] = not showing["raw"]
            show(other if showing["raw"] else text)
            button.configure(text=back if showing["raw"] else label)

        button = tk.Button(bottom, name="raw", text=label, command=toggle)
        button.pack(side="left", padx=8)
    return win
