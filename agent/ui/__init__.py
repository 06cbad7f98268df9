"""The worker-facing UI: tray icon (pystray), status window and dialogs (Tk), icons (Pillow).

``from agent.ui.tray import Tray`` is the entry point; see its module docstring for threads and commands.
"""
