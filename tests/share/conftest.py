"""Share tests use the real X desktop fixtures of tests/harness for their Xvfb tests."""

from tests.harness.desktop import *  # noqa: F403
