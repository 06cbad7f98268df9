"""Window churn for the X11 robustness test (issue 11): RATE top-level windows a second are created, mapped,
moved, retitled and destroyed for SECONDS seconds; every other one is destroyed from a second X connection, the
way ``xdotool windowclose`` closes someone else's window. Their titles match the test policy's customer rule, so
the agent covers and uncovers them as fast as they come and go.

    python churn.py SECONDS RATE      (DISPLAY from the environment; prints "done N" at the end)
"""

from __future__ import annotations

import os
import sys
import time

from Xlib import X, Xatom, display


def main() -> int:
    seconds, rate = float(sys.argv[1]), int(sys.argv[2])
    d, killer = display.Display(), display.Display()
    d.set_error_handler(lambda *_a: None)
    killer.set_error_handler(lambda *_a: None)
    screen = d.screen()
    net_name, utf8, net_pid = (d.intern_atom(n) for n in ("_NET_WM_NAME", "UTF8_STRING", "_NET_WM_PID"))
    live: list[tuple[float, object]] = []
    made = 0
    end = time.monotonic() + seconds
    interval = 1.0 / rate
    next_at = time.monotonic()
    while time.monotonic() < end:
        now = time.monotonic()
        if now >= next_at:
            next_at += interval
            win = screen.root.create_window(
                (made * 37) % 900, (made * 53) % 500, 300, 120, 0, screen.root_depth,
                background_pixel=screen.white_pixel, event_mask=X.StructureNotifyMask,
            )  # fmt: skip
            win.change_property(net_name, utf8, 8, f"顧客台帳 churn {made}".encode())
            win.change_property(net_pid, Xatom.CARDINAL, 32, [os.getpid()])
            win.set_wm_class("churn", "Churn")
            win.map()
            live.append((now, win))
            made += 1
        for created, win in list(live):
            age = now - created
            if age > 0.3:
                win.configure(x=(made * 11) % 900, y=(made * 7) % 500)  # type: ignore[attr-defined]
                win.change_property(net_name, utf8, 8, f"顧客台帳 moved {made}".encode())  # type: ignore[attr-defined]
            if age > 0.8:
                live.remove((created, win))
                if made % 2:
                    killer.create_resource_object("window", win.id).destroy()  # type: ignore[attr-defined]
                    killer.flush()
                else:
                    win.destroy()  # type: ignore[attr-defined]
        d.flush()
        while d.pending_events():
            d.next_event()
        time.sleep(0.005)
    for _, win in live:
        win.destroy()  # type: ignore[attr-defined]
    d.sync()
    print(f"done {made}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
