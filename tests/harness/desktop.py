"""pytest plugin: real X desktop fixtures (Xvfb + openbox + trayer) for any test folder.

Register once in tests/conftest.py with ``pytest_plugins = ["tests.harness.desktop"]`` (or, until then, in a
folder's conftest.py: ``from tests.harness.desktop import *  # noqa: F403``).

Fixtures:
- ``xdesktop``: one 1280x800 monitor, openbox, trayer; fresh per test.
- ``xdesktop_wide``: a 2560x800 screen split by the test into two 1280x800 monitors (``xdesktop.monitors``).
- ``xdesktop_factory``: ``xdesktop_factory(monitors=1, size=(w, h), tray=True, wm=True) -> XDesktop``.

A test using any of them is marked ``desktop`` automatically (CI fails instead of skipping it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.harness.xdesktop import HarnessError, XDesktop, missing_tools

DESKTOP_FIXTURES = {"xdesktop", "xdesktop_wide", "xdesktop_factory"}

__all__ = ["pytest_collection_modifyitems", "xdesktop", "xdesktop_factory", "xdesktop_wide"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if DESKTOP_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.desktop)


@pytest.fixture
def xdesktop_factory() -> Iterator[Callable[..., XDesktop]]:
    started: list[XDesktop] = []

    def make(**kwargs: Any) -> XDesktop:
        missing = missing_tools(kwargs.get("tray", True))
        if missing:
            pytest.skip(f"desktop tools not installed: {', '.join(missing)} (run .ci/run)")
        try:
            desk = XDesktop.start(**kwargs)
        except HarnessError as err:
            pytest.skip(f"cannot start a test X desktop: {err}")
        started.append(desk)
        return desk

    yield make
    for desk in started:
        desk.stop()


@pytest.fixture
def xdesktop(xdesktop_factory: Callable[..., XDesktop]) -> XDesktop:
    return xdesktop_factory()


@pytest.fixture
def xdesktop_wide(xdesktop_factory: Callable[..., XDesktop]) -> XDesktop:
    return xdesktop_factory(monitors=2)
