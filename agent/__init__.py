"""Mamori endpoint agent: runs in the worker's desktop session."""

from core import __version__

__all__ = ["__version__"]
