"""What agent/, policy/ and server/ share, and nothing else: the error root, the injected clock, the version.

policy/ and server/ may import this package; they never import agent/ (the layering contracts in
pyproject.toml, checked by ``make lint``).
"""

__version__ = "0.1.0"
