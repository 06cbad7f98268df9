"""Whole-product tests use the real X desktop fixtures of tests/harness."""

from tests.harness.desktop import *  # noqa: F403
