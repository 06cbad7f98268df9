"""Mamori endpoint agent: runs in the worker's desktop session."""

__version__ = "0.1.0"
