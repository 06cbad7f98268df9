"""A stand-in "customer app": one Tk window with a known title, WM_CLASS and big known text.

Run by :meth:`tests.harness.xdesktop.XDesktop.open_window` as its own process (through a symlink named after
the process the test wants, so ``/proc/PID/comm`` and psutil report that name). Only the standard library is
used, so it runs under the base interpreter.

stdout: one JSON line ``{"ready": true, "xid": int, "pid": int}`` once the window is mapped.
stdin: one JSON command a line: ``{"cmd": "title", "value": str}``, ``{"cmd": "text", "value": str}``,
``{"cmd": "fullscreen", "value": bool}``, ``{"cmd": "copy", "value": str}`` (own CLIPBOARD with the text),
``{"cmd": "select", "value": str}`` (own PRIMARY with the text), ``{"cmd": "quit"}``. EOF on stdin quits.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
import tkinter as tk


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--title", required=True)
    parser.add_argument("--text", required=True)
    parser.add_argument("--wm-class", default="Custapp")
    parser.add_argument("--geometry", default="640x240+100+100")
    parser.add_argument("--font-size", type=int, default=40)
    parser.add_argument("--background", default="white")
    args = parser.parse_args()

    root = tk.Tk(className=args.wm_class)
    root.title(args.title)
    root.geometry(args.geometry)
    root.configure(background=args.background)
    label = tk.Label(
        root,
        text=args.text,
        font=("DejaVu Sans Mono", args.font_size, "bold"),
        foreground="black",
        background=args.background,
    )
    label.pack(expand=True, fill="both")
    # wait_visibility() would hang if the VisibilityNotify came before it; poll the mapped state instead.
    while not root.winfo_viewable():
        root.update()
        time.sleep(0.01)
    root.update()
    # `wm frame` names the WM's decoration frame once reparented; the EWMH client is Tk's wrapper, the
    # parent of the toplevel's own X window.
    tree = subprocess.run(
        ["xwininfo", "-tree", "-id", str(root.winfo_id())], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"Parent window id: (0x[0-9a-f]+)", tree)
    assert match is not None, tree
    xid = int(match.group(1), 16)
    # Tk does not set _NET_WM_PID (EWMH); real apps do, and the agent's X11 backend reads it.
    subprocess.run(
        ["xprop", "-id", str(xid), "-f", "_NET_WM_PID", "32c", "-set", "_NET_WM_PID", str(os.getpid())],
        check=False,
    )
    primary = [""]  # what this window serves as the PRIMARY selection once it owns it
    root.selection_handle(
        lambda offset, length: primary[0][int(offset) : int(offset) + int(length)], selection="PRIMARY"
    )
    commands: queue.Queue[dict[str, object] | None] = queue.Queue()

    def read_stdin() -> None:
        for raw in sys.stdin:
            if raw.strip():
                commands.put(json.loads(raw))
        commands.put(None)

    threading.Thread(target=read_stdin, daemon=True).start()

    def poll() -> None:
        while True:
            try:
                command = commands.get_nowait()
            except queue.Empty:
                break
            if command is None or command.get("cmd") == "quit":
                root.destroy()
                return
            value = command.get("value")
            if command["cmd"] == "title":
                root.title(str(value))
            elif command["cmd"] == "text":
                label.configure(text=str(value))
            elif command["cmd"] == "fullscreen":
                root.attributes("-fullscreen", bool(value))
            elif command["cmd"] == "copy":
                root.clipboard_clear()
                root.clipboard_append(str(value))
                root.update()
            elif command["cmd"] == "select":
                primary[0] = str(value)
                root.selection_own(selection="PRIMARY")
                root.update()
            print(json.dumps({"done": command["cmd"]}), flush=True)
        root.after(30, poll)

    root.after(30, poll)
    print(json.dumps({"ready": True, "xid": xid, "pid": os.getpid()}), flush=True)
    root.mainloop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
