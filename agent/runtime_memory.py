"""The C allocator of the long-running agent (glibc on Linux): two malloc arenas, and free pages handed back to
the system once start-up is over.

glibc gives each thread that allocates its own arena, up to eight per core, and keeps an arena's freed pages
mapped; the agent runs ~20 threads that allocate a little each. ``MALLOC_ARENA_MAX`` would need every launcher
(systemd unit, XDG autostart) to set it, so the agent sets the same limit itself with ``mallopt`` before its
threads start. ``ctypes`` is imported for this only on Linux (0.4 MB); the two calls save more than that
(docs/performance-agent.md, "agent memory, enrolled + tray"). Elsewhere, and on a C library without these
calls (musl), both functions do nothing and say so by returning False.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

logger = logging.getLogger(__name__)

M_ARENA_MAX = -8  # glibc <malloc.h>
ARENAS = 2


def limit_arenas(arenas: int = ARENAS) -> bool:
    """At most ``arenas`` malloc arenas from now on (call before starting threads). An administrator's
    ``MALLOC_ARENA_MAX`` wins. Whether the limit was set."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    libc = _glibc()
    return bool(libc is not None and libc.mallopt(M_ARENA_MAX, arenas) == 1)


def release_free_memory() -> bool:
    """Hand the free pages of every arena back to the system (``malloc_trim(0)``). Whether it could be asked."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def _glibc() -> Any | None:
    if sys.platform != "linux":
        return None
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        if not (hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim")):
            return None
    except OSError as err:  # no C library to open: nothing to tune
        logger.debug("C library not loadable: %s", err)
        return None
    return libc
