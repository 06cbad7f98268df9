"""The console's sign-in page renderer and text, kept here for server/routes/signin.py; the console itself is
server/console/ (pages, text catalogs, charts) and server/routes/console.py (routes)."""

from __future__ import annotations

from server.console.render import render_login
from server.console.text import TEXT

__all__ = ["TEXT", "render_login"]
