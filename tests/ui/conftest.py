"""UI tests: real X desktop fixtures from tests/harness (Xvfb + openbox + trayer)."""

from tests.harness.desktop import *  # noqa: F403
