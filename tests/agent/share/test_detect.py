"""detect(): unreadable signals are "unknown", never "not sharing"; matching rules of a signature."""

from __future__ import annotations

import re

from agent.platform.base import Rect, Window
from agent.share.detect import PIPEWIRE_APP, CaptureStream, ProcessInfo, detect
from policy.model import ShareSignature

ZOOM = ShareSignature(
    app="Zoom", processes=("zoom",), title=re.compile("^as_toolbar$"), wm_class=re.compile("^zoom")
)
OBS = ShareSignature(app="OBS Studio", processes=("obs", "obs64.exe"))
BAR = ShareSignature(app="Bar", title=re.compile("is sharing your screen"))  # no process requirement
SIGS = (ZOOM, OBS, BAR)


def win(title: str, process: str = "zoom", wm_class: str = "zoom") -> Window:
    return Window(
        id=1, title=title, pid=10, process_name=process, rect=Rect(0, 0, 100, 30), wm_class=wm_class
    )


def procs(*names: str) -> list[ProcessInfo]:
    return [ProcessInfo(pid=100 + i, name=n) for i, n in enumerate(names)]


def test_indicator_window_and_process_make_a_share() -> None:
    state = detect([win("as_toolbar")], procs("zoom"), SIGS)
    assert state.active and state.apps == ("Zoom",) and state.unknown == ()


def test_each_condition_of_a_signature_is_required() -> None:
    assert not detect([win("Zoom Meeting")], procs("zoom"), SIGS).active  # title
    assert not detect([win("as_toolbar", wm_class="Other")], procs("zoom"), SIGS).active  # class
    assert not detect([win("as_toolbar")], procs("bash"), SIGS).active  # process not running
    assert not detect([win("as_toolbar", process="vim")], procs("zoom", "vim"), SIGS).active  # other owner


def test_window_with_unknown_owner_still_counts() -> None:
    assert detect([win("as_toolbar", process="")], procs("zoom"), SIGS).apps == ("Zoom",)


def test_unreadable_window_list_makes_running_window_apps_unknown() -> None:
    state = detect(None, procs("zoom", "obs"), SIGS)
    assert state.apps == ("OBS Studio",)  # process-only signatures are still decided
    assert state.unknown == ("Zoom", "Bar")
    # Zoom not running: its state is known (not sharing) even without windows.
    assert detect(None, procs("bash"), SIGS).unknown == ("Bar",)


def test_unreadable_process_list() -> None:
    # The indicator is visible and owned by zoom: sharing, whatever the process table says.
    state = detect([win("as_toolbar")], None, SIGS)
    assert state.apps == ("Zoom",)
    assert state.unknown == ("OBS Studio",)  # process-only: cannot tell
    # No indicator on a readable window list: Zoom is not sharing (an indicator is required).
    assert detect([win("Zoom Meeting")], None, SIGS).unknown == ("OBS Studio",)


def test_nothing_readable_is_all_unknown_not_idle() -> None:
    state = detect(None, None, SIGS, captures=None)
    assert not state.active
    assert state.unknown == ("Zoom", "OBS Studio", "Bar", PIPEWIRE_APP)


def test_hidden_titles_make_title_signatures_unknown() -> None:
    state = detect([win("")], procs("zoom"), SIGS, titles_readable=False)
    assert state.unknown == ("Zoom", "Bar")
    # A readable title that matches still counts even when titles are said to be unreliable.
    assert detect([win("as_toolbar")], procs("zoom"), SIGS, titles_readable=False).apps == ("Zoom",)


def test_pipewire_captures() -> None:
    assert detect([], [], SIGS, captures=[CaptureStream("Browser")]).apps == ("Browser",)
    assert detect([], [], SIGS, captures=None).unknown == (PIPEWIRE_APP,)


def test_detected_app_is_not_also_unknown_and_apps_are_unique() -> None:
    zoom_by_process = ShareSignature(app="Zoom", processes=("zoom",))
    state = detect(None, procs("zoom"), (ZOOM, zoom_by_process, zoom_by_process))
    assert state.apps == ("Zoom",) and state.unknown == ()


def test_process_globs_ignore_case_and_exe() -> None:
    chrome = ShareSignature(app="Chrome", processes=("google-chrome*", "chrome.exe"))
    for name in ("OBS64.EXE", "obs64", "obs"):
        assert detect([], procs(name), SIGS).apps == ("OBS Studio",), name
    for name in ("google-chrome-stable", "chrome", "CHROME.EXE"):
        assert detect([], procs(name), (chrome,)).apps == ("Chrome",), name
    assert detect([], procs("obsidian", "zoomer"), SIGS).apps == ()
