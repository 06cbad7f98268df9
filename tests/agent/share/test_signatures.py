"""Built-in signatures over window/process lists of Windows, macOS and Linux machines (tests/agent/share/data)."""

from __future__ import annotations

import pytest

from agent.platform.base import Rect, Window
from agent.share.detect import ProcessInfo, detect
from agent.share.signatures import OS_FAMILIES, builtin_signatures, signatures_for
from policy.load import load_policy
from tests.harness.share_fixtures import Snapshot, all_snapshots

SNAPSHOTS = all_snapshots()


@pytest.mark.parametrize("snap", SNAPSHOTS, ids=[s.name for s in SNAPSHOTS])
def test_snapshot_detects_exactly_the_expected_apps(snap: Snapshot) -> None:
    state = detect(
        snap.windows,
        snap.processes,
        builtin_signatures(snap.os),
        titles_readable=snap.titles_readable,  # type: ignore[arg-type]
    )
    assert sorted(state.apps) == sorted(snap.expect_apps), snap.description
    assert sorted(state.unknown) == sorted(snap.expect_unknown), snap.description
    assert state.active is bool(snap.expect_apps)


@pytest.mark.parametrize("os_family", ["windows", "macos"])
def test_every_builtin_signature_fires_in_some_captured_list(os_family: str) -> None:
    fired = {app for s in SNAPSHOTS if s.os == os_family for app in s.expect_apps}
    names = {sig.app for sig in builtin_signatures(os_family)}  # type: ignore[arg-type]
    assert names - fired == set(), f"{os_family} signatures without a snapshot that triggers them"


def test_each_os_has_a_quiet_snapshot_with_meeting_apps_open() -> None:
    # Guards against signatures that fire on a merely running meeting app.
    for os_family in OS_FAMILIES:
        quiet = [s for s in SNAPSHOTS if s.os == os_family and not s.expect_apps and not s.expect_unknown]
        assert quiet, os_family
        assert all(not detect(s.windows, s.processes, builtin_signatures(os_family)).active for s in quiet)


def _indicator(title: str, process: str, wm_class: str = "Chrome_WidgetWin_1") -> Window:
    return Window(
        id=7, title=title, pid=77, process_name=process, rect=Rect(700, 1000, 520, 40), wm_class=wm_class
    )


@pytest.mark.parametrize(
    "title",
    [
        "meet.google.com is sharing your screen.",
        "meet.google.com is sharing a window.",
        "teams.microsoft.com is sharing this tab.",
        "app.zoom.us is sharing your screen and audio.",
        "meet.google.com が画面を共有しています。",
        "web.webex.com がウィンドウを共有しています。",
        "teams.microsoft.com がタブを共有しています",
        "meet.google.com が画面と音声を共有しています。",
    ],
)
@pytest.mark.parametrize(
    ("os_family", "process"), [("windows", "chrome.exe"), ("linux", "chrome"), ("macos", "Google Chrome")]
)
def test_browser_indicator_in_english_and_japanese(title: str, os_family: str, process: str) -> None:
    running = [ProcessInfo(pid=77, name=process)]
    state = detect([_indicator(title, process)], running, builtin_signatures(os_family))  # type: ignore[arg-type]
    assert state.apps == ("Browser",)
    # The same bar with the browser not running (a stale list) is not a share.
    state = detect([_indicator(title, process)], [], builtin_signatures(os_family))  # type: ignore[arg-type]
    assert not state.active


@pytest.mark.parametrize(
    "title",
    [
        "meet.google.com is sharing your screen. - Google Chrome",  # a tab titled like the bar
        "How to stop meet.google.com is sharing your screen - Google 検索 - Google Chrome",
        "画面を共有しています - Google Chrome",
        "Meet - abc-defg-hij - Google Chrome",
    ],
)
def test_browser_windows_that_only_mention_sharing_do_not_fire(title: str) -> None:
    running = [ProcessInfo(pid=77, name="chrome.exe")]
    assert not detect([_indicator(title, "chrome.exe")], running, builtin_signatures("windows")).active


def test_indicator_owned_by_another_process_does_not_fire() -> None:
    window = _indicator(
        "meet.google.com is sharing your screen.", "notepad.exe", wm_class="Chrome_WidgetWin_1"
    )
    running = [ProcessInfo(pid=77, name="notepad.exe"), ProcessInfo(pid=78, name="chrome.exe")]
    assert not detect([window], running, builtin_signatures("windows")).active


POLICY_WITH_SIGNATURES = """
schema = 1
id = "acme-remote"
version = 3

[[screen_share.signatures]]
app = "Webex"
processes = ["CiscoCollabHost.exe"]
title = "^(Webex 共有コントロール|Webex sharing controls)$"

[[screen_share.signatures]]
app = "Acme Recorder"
processes = ["acme-rec*"]
"""


def test_policy_signatures_extend_the_builtins() -> None:
    policy = load_policy(POLICY_WITH_SIGNATURES.encode(), "policy.toml")
    signatures = signatures_for(policy, "windows")
    assert signatures[: len(builtin_signatures("windows"))] == builtin_signatures("windows")
    webex = Window(
        id=1,
        title="Webex 共有コントロール",
        pid=5,
        process_name="CiscoCollabHost.exe",
        rect=Rect(0, 0, 400, 40),
    )
    state = detect([webex], [ProcessInfo(pid=5, name="CiscoCollabHost.exe")], signatures)
    assert state.apps == ("Webex",)
    state = detect(
        [], [ProcessInfo(pid=9, name="acme-rec64.exe"), ProcessInfo(pid=10, name="obs64.exe")], signatures
    )
    assert sorted(state.apps) == ["Acme Recorder", "OBS Studio"]
    # Without the policy, neither is known.
    assert (
        detect([webex], [ProcessInfo(pid=9, name="acme-rec64.exe")], builtin_signatures("windows")).apps == ()
    )
