"""A minimal i3lock-like screen locker for tests: a black override-redirect window over the whole screen that
grabs keyboard and pointer. It neither starts the X screensaver nor talks to logind, like many real lockers.

    python locker.py PIDFILE      (DISPLAY from the environment; runs until SIGTERM)
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from Xlib import X, display


def main() -> int:
    Path(sys.argv[1]).write_text(str(os.getpid()))
    d = display.Display()
    screen = d.screen()
    geom = screen.root.get_geometry()
    win = screen.root.create_window(
        0,
        0,
        geom.width,
        geom.height,
        0,
        screen.root_depth,
        background_pixel=screen.black_pixel,
        override_redirect=True,
    )
    win.map()
    d.sync()
    for _ in range(50):
        if win.grab_keyboard(False, X.GrabModeAsync, X.GrabModeAsync, X.CurrentTime) == X.GrabSuccess:
            break
        time.sleep(0.05)
    win.grab_pointer(False, 0, X.GrabModeAsync, X.GrabModeAsync, X.NONE, X.NONE, X.CurrentTime)
    d.sync()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        d.next_event()


if __name__ == "__main__":
    sys.exit(main())
