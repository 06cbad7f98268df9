"""Desktop tests run under a real X server (tests/harness)."""

from tests.harness.desktop import *  # noqa: F403
