"""Shared test configuration.

With MAMORI_REQUIRE_ALL_TESTS=1 (set by .ci/run) a skipped desktop, network, PostgreSQL or real-application test
fails the run: CI must not skip them (SPEC.md, "Testing for real").
"""

from __future__ import annotations

import os

import pytest

# The real X desktop fixtures (xdesktop, xdesktop_wide, xdesktop_factory) and the network-namespace VPN lab
# (lab) for every test folder.
pytest_plugins = ["tests.harness.desktop", "tests.harness.network"]

REQUIRED_MARKERS = ("desktop", "network", "postgres", "apps", "gnome")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    required = any(item.get_closest_marker(m) for m in REQUIRED_MARKERS)
    if os.environ.get("MAMORI_REQUIRE_ALL_TESTS") == "1" and report.skipped and required:
        report.outcome = "failed"
        report.longrepr = f"required test was skipped in CI: {report.longrepr}"
