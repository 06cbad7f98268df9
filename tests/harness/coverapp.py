"""A stand-in cover: an override-redirect, topmost Tk window of one colour with a short label.

Run as its own process by tests/harness/xwindows.py. Prints ``{"ready": true}`` once mapped.
"""

from __future__ import annotations

import argparse
import json
import time
import tkinter as tk


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--geometry", required=True)
    parser.add_argument("--colour", required=True)
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    root = tk.Tk()
    root.overrideredirect(True)
    root.geometry(args.geometry)
    root.configure(background=args.colour)
    tk.Label(root, text=args.label, background=args.colour, foreground="white", font=("IPAGothic", 14)).pack(
        expand=True
    )
    root.attributes("-topmost", True)
    # wait_visibility() can miss the VisibilityNotify of an override-redirect window mapped during update().
    for _ in range(200):
        root.update()
        if root.winfo_viewable():
            break
        time.sleep(0.01)
    root.lift()
    root.update()
    print(json.dumps({"ready": True}), flush=True)
    root.mainloop()


if __name__ == "__main__":
    main()
